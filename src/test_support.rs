//! Helpers shared by the unit tests.

/// Run a test body on its own glommio executor. Small `io_memory`, so that
/// parallel tests fit the locked-memory limit of test machines.
pub fn run<G, F, T>(body: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(body)
        .expect("executor starts")
        .join()
        .expect("executor thread")
}

/// xorshift64*: a seeded generator, so a failure replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}
