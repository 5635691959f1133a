//! The README's first command, run the way a newcomer runs it.
//!
//! A whole round of work once shipped with `cargo run --release` failing on
//! a fresh checkout: the default data directory is relative
//! (`./ringstore-data`), and glommio opened it with `openat(-1, ...)`,
//! which fails with `EBADF` for a relative path. Every other test passed,
//! because every other test hands the server an absolute `--data-dir`.
//! These tests start the real binary with no flags but free ports, in an
//! empty working directory, and with a relative `--data-dir`.

mod common;

use common::{Keys, Server, ServerOptions};

/// The key pair the server printed on stdout at this start.
fn printed_keys(server: &Server) -> Keys {
    let field = |label: &str| {
        server
            .stdout_lines
            .iter()
            .find_map(|line| line.trim().strip_prefix(label))
            .map_or_else(
                || {
                    panic!(
                        "no {label:?} line on stdout:\n{}",
                        server.stdout_lines.join("\n")
                    )
                },
                |value| value.trim().to_owned(),
            )
    };
    Keys::new(&field("access key id:"), &field("secret access key:"))
}

/// PUT an object with `keys`, then GET it back.
async fn put_and_get(server: &Server, keys: &Keys, bucket: &str, body: &[u8]) {
    let client = server.client_with(keys, server.region());
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("CreateBucket with the printed credentials");
    client
        .put_object()
        .bucket(bucket)
        .key("hello.txt")
        .body(body.to_vec().into())
        .send()
        .await
        .expect("PutObject with the printed credentials");
    assert_object(server, keys, bucket, body).await;
}

async fn assert_object(server: &Server, keys: &Keys, bucket: &str, body: &[u8]) {
    let got = server
        .client_with(keys, server.region())
        .get_object()
        .bucket(bucket)
        .key("hello.txt")
        .send()
        .await
        .expect("GetObject with the printed credentials")
        .body
        .collect()
        .await
        .expect("the object's body")
        .into_bytes();
    assert_eq!(&got[..], body);
}

/// Goal: `ringstore` with no flags but free ports, in an empty working
/// directory, starts, prints a key pair and its endpoint, serves a PUT and
/// a GET signed with the printed pair, and starts again on the same
/// (default, relative) data directory with the same pair and the object.
#[tokio::test]
async fn readme_first_command_starts_in_an_empty_directory_and_again() {
    let mut server = ServerOptions::new()
        .no_keys()
        .omit_data_dir()
        .working_dir("newcomer")
        .start();
    let data_dir = server.root().join("newcomer").join("ringstore-data");
    assert_eq!(server.data_dir(), data_dir);
    assert!(
        data_dir.join("credentials.toml").is_file(),
        "the default data directory is ./ringstore-data in the working directory"
    );
    let printed = server.stdout_lines.join("\n");
    assert!(
        printed.contains(&format!("ringstore listening on http://{}", server.addr)),
        "the endpoint is printed:\n{printed}"
    );
    let keys = printed_keys(&server);
    assert_eq!(keys, common::read_stored_keys(&data_dir));
    put_and_get(&server, &keys, "first-start", b"hello, newcomer").await;

    server.restart();
    assert_eq!(
        printed_keys(&server),
        keys,
        "the second start prints the same pair"
    );
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|line| line.contains("using stored credentials")),
        "{}",
        server.stdout_lines.join("\n")
    );
    assert_object(&server, &keys, "first-start", b"hello, newcomer").await;
    server.stop();
}

/// Goal: a relative `--data-dir` works on the first start and on every
/// later one, on one core and on the default core count.
#[tokio::test]
async fn relative_data_dir_works_on_every_start() {
    for cores in [Some(1), None] {
        let options = ServerOptions::new()
            .no_keys()
            .data_dir(std::path::Path::new("relative/data"))
            .working_dir("cwd");
        let options = match cores {
            Some(cores) => options.cores(cores),
            None => options,
        };
        let mut server = options.start();
        assert_eq!(
            server.data_dir(),
            server.root().join("cwd").join("relative").join("data")
        );
        let keys = printed_keys(&server);
        put_and_get(&server, &keys, "relative-dir", b"relative").await;
        server.restart();
        assert_object(&server, &keys, "relative-dir", b"relative").await;
        server.stop();
    }
}
