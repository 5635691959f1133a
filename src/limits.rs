//! Every hard limit of ringstore, in one place.
//!
//! A limit exists so that no input can make a core allocate without bound,
//! wait without bound, or hold resources that other clients need. Each
//! constant says why it has the value it has; the `const` assertions at the
//! end tie related limits together so that changing one cannot silently
//! break another. Limits that tests need to reach quickly (timeouts, the
//! connection cap) are defaults of configuration fields, never literals in
//! the code that enforces them.

/// Largest request head (request line plus all header lines plus the blank
/// line). AWS S3 answers `RequestHeaderSectionTooLarge` past 8 KiB of
/// headers; we allow more because presigned URLs with session tokens put
/// several KiB into the request line, and 2 KiB of user metadata plus system
/// metadata must fit comfortably.
pub const REQUEST_HEAD_BYTES_MAX: usize = 32 * 1024;

/// Most header fields in one request head. hyper uses 100 by default; an S3
/// request with every system header, checksum headers and a few dozen user
/// metadata entries stays far below it.
pub const HEADER_COUNT_MAX: usize = 100;

/// Longest request target (path plus query). A 1024-byte key, fully
/// percent-encoded, is 3072 bytes; a presigned URL adds about 1 KiB of
/// query, plus a security token of up to ~4 KiB.
pub const URI_BYTES_MAX: usize = 12 * 1024;

/// Longest key, in bytes of UTF-8, exactly as AWS S3.
pub const KEY_BYTES_MAX: usize = 1024;

/// Bucket name length bounds, exactly as AWS S3.
pub const BUCKET_NAME_BYTES_MIN: usize = 3;
pub const BUCKET_NAME_BYTES_MAX: usize = 63;

/// Largest request body the server will read for an XML-bodied request
/// (`CreateBucketConfiguration`, `DeleteObjects`, `CompleteMultipartUpload`...).
/// `CompleteMultipartUpload` with 10,000 parts and checksums is the largest
/// legitimate one, around 1.5 MiB.
pub const XML_BODY_BYTES_MAX: u64 = 2 * 1024 * 1024;

/// Longest line in an HTTP chunked body or an aws-chunked body that is not
/// data: a chunk-size line with extensions (an aws-chunked signature line is
/// about 90 bytes) or one trailer line (a checksum or a trailer signature).
pub const CHUNK_LINE_BYTES_MAX: usize = 4 * 1024;

/// Most trailer bytes after the last chunk, all lines together. The aws
/// trailers carry one checksum and one signature; HTTP trailers are rare.
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;

/// Most trailer fields after the last chunk.
pub const TRAILER_COUNT_MAX: usize = 16;

/// Largest valid chunk size in an HTTP chunked or aws-chunked body: bigger
/// chunk-size fields are rejected before any arithmetic can overflow.
pub const CHUNK_BYTES_MAX: u64 = 1 << 40;

/// Largest object in one `PutObject`, exactly as AWS S3 (5 GiB).
pub const OBJECT_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;

/// Most parts of one multipart upload, and the highest part number, exactly
/// as AWS S3 (parts are numbered 1 to 10,000).
pub const PART_COUNT_MAX: u32 = 10_000;

/// Smallest part of a multipart upload other than the last, checked by
/// `CompleteMultipartUpload` (`EntityTooSmall`), exactly as AWS S3 (5 MiB).
pub const PART_BYTES_MIN: u64 = 5 * 1024 * 1024;

/// Largest part of a multipart upload, exactly as AWS S3 (5 GiB).
pub const PART_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;

/// Largest multipart object: its commit record lists every extent, and
/// one record holds at most `object::EXTENT_COUNT_MAX` of them, which is
/// this size when every extent is full (1 MiB), as parts of 5 MiB and more
/// are written. AWS allows 5 TiB; a larger object is `EntityTooLarge`.
pub const MULTIPART_OBJECT_BYTES_MAX: u64 = 80 * 1024 * 1024 * 1024;

/// Completed uploads each core remembers, so that a client that retries a
/// `CompleteMultipartUpload` whose answer it lost gets the same answer
/// (the oldest is forgotten first; a retry after that is `NoSuchUpload`).
pub const COMPLETED_UPLOADS_REMEMBERED: usize = 10_000;

/// How many times a copy from another core follows its source after
/// compaction moved it (the same version at a new place) before it gives
/// up with `OperationAborted`; a move happens at most once per compaction
/// pass, so more than one in a row is rare.
pub const COPY_SOURCE_MOVES_MAX: usize = 8;

/// Most parts one `ListParts` page returns, and most uploads one
/// `ListMultipartUploads` page returns, as AWS.
pub const LIST_PARTS_PAGE_MAX: usize = 1000;

/// Size of the buffer a connection reads into. Request heads are parsed
/// from it and body bytes are streamed through it, so one connection never
/// holds more than this of network input.
pub const CONNECTION_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Default time a client has to send a complete request head once it has
/// started (or once the connection opened): slow-loris protection.
pub const HEAD_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Default time an idle keep-alive connection is kept open between requests.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// Default time to wait for the next piece of a request body before the
/// request fails with `RequestTimeout`, as AWS does for stalled uploads.
pub const BODY_READ_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Default number of open client connections per core. Past it, a new
/// connection receives `503 SlowDown` and is closed.
pub const CONNECTIONS_PER_CORE_MAX_DEFAULT: usize = 4096;

/// File descriptors set aside for each core besides its client
/// connections: the segment files its reader keeps open
/// (`storage::segment::OPEN_SEGMENT_FILES_MAX`, 64), the active segment, the
/// files an index flush, merge or compaction has open for a moment, and the
/// executor's own (`io_uring` rings, eventfds, timers). The per-core
/// connection limit is derived from the open-files limit minus these, so
/// that accepting a connection can never take the descriptor a segment
/// needs.
pub const FILES_RESERVED_PER_CORE: usize = 256;

/// File descriptors set aside for the process as a whole: standard
/// streams, the data directory's lock, the listening sockets, the admin
/// endpoint's connections (`ADMIN_CONNECTIONS_MAX`) and the catalog and
/// credential files.
pub const FILES_RESERVED_PROCESS: usize = 64 + ADMIN_CONNECTIONS_MAX;

/// Fewest client connections per core the server starts with: below it the
/// open-files limit is too low to serve, and saying so at start beats
/// refusing clients later.
pub const CONNECTIONS_PER_CORE_MIN: usize = 16;

/// Most connections the admin endpoint (health, metrics) serves at once; it
/// is for probes and scrapers, not for load. Past it a connection is closed
/// at once.
pub const ADMIN_CONNECTIONS_MAX: usize = 64;

/// Largest object extent (one `Data` record's payload), as
/// `storage::object::EXTENT_BYTES_MAX` (which asserts it is this).
pub const EXTENT_BYTES_MAX: u64 = 1024 * 1024;

/// Default request-body bytes each core holds in memory at once, over all its
/// requests: a PUT or `UploadPart` streaming into extents holds two extent
/// buffers (2 MiB), a small PUT its body, an XML request its document.
/// A request waits for its share before it reads its body (the client is
/// held back by TCP, not refused), so memory stays bounded however many
/// connections upload at once: without it, 4096 connections per core
/// could hold 8 GiB. 256 MiB lets 128 large uploads per core stream at
/// once, more than a disk needs to reach its bandwidth.
pub const BODY_BYTES_IN_FLIGHT_PER_CORE_MAX: u64 = 256 * 1024 * 1024;

/// Default multipart uploads in progress on one core (the core that owns their
/// key). Each one keeps its parts' list in memory until it is completed or
/// aborted, so their number must be bounded; past it,
/// `CreateMultipartUpload` is refused until some are completed or aborted
/// (an abandoned upload counts until it is aborted).
pub const MULTIPART_UPLOADS_PER_CORE_MAX: usize = 10_000;

/// Free space kept per core, besides one segment, for what must work on a
/// full disk: index checkpoints (runs and manifests), upload snapshots and
/// the catalog. The default reserve is, per core, one segment (for the
/// tombstones and compaction copies that free space) plus this; new object
/// data is refused before the file system's free space falls under it.
pub const RESERVED_SPACE_EXTRA_PER_CORE_BYTES: u64 = 64 * 1024 * 1024;

/// Default time between two checks of whether a compaction pass is due
/// (`storage::shard::compaction`). A check that finds nothing due costs
/// nothing; a pass walks the index.
pub const COMPACTION_INTERVAL_MS_DEFAULT: u64 = 10_000;

/// Default rate at which each core's scrub reads and verifies its objects:
/// 32 MiB/s is a few percent of a disk's sequential read, so it never
/// competes much with clients, and still reads a terabyte per core in
/// about nine hours.
pub const SCRUB_BYTES_PER_SECOND_DEFAULT: u64 = 32 * 1024 * 1024;

/// Default pause between two scrub passes over a core's objects.
pub const SCRUB_PAUSE_MS_DEFAULT: u64 = 3_600_000;

/// Smallest `segment_bytes` setting: the largest record (a 4 MiB payload
/// plus its header) and a seal must fit, with room to spare. Small
/// segments are for tests that want compaction to happen quickly.
pub const SEGMENT_BYTES_MIN: u64 = 8 * 1024 * 1024;

/// How long shutdown waits for in-flight requests before it exits anyway.
pub const SHUTDOWN_DRAIN_MS: u64 = 10_000;

/// Header authentication: largest allowed difference between the request's
/// signing time and the server clock, as AWS (15 minutes).
pub const CLOCK_SKEW_MS_MAX: u64 = 15 * 60 * 1000;

/// Presigned URLs: longest validity, as AWS (7 days, in seconds).
pub const PRESIGNED_EXPIRES_SECONDS_MAX: u64 = 604_800;

/// Most user metadata, as AWS S3: the sum of names (without `x-amz-meta-`)
/// and values, in bytes.
pub const USER_METADATA_BYTES_MAX: usize = 2 * 1024;

/// Most buckets, as AWS's default quota raised for a single-tenant server.
pub const BUCKET_COUNT_MAX: usize = 10_000;

/// Messages in flight from one core to another. Bounded, so a slow shard
/// pushes back on the cores sending to it instead of growing a queue.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

const _: () = assert!(URI_BYTES_MAX < REQUEST_HEAD_BYTES_MAX);
// The largest single reservation (an XML body) fits the per-core budget.
const _: () = assert!(XML_BODY_BYTES_MAX <= BODY_BYTES_IN_FLIGHT_PER_CORE_MAX);
const _: () = assert!(2 * EXTENT_BYTES_MAX <= BODY_BYTES_IN_FLIGHT_PER_CORE_MAX);
const _: () = assert!(REQUEST_HEAD_BYTES_MAX <= CONNECTION_READ_BUFFER_BYTES);
const _: () = assert!(KEY_BYTES_MAX * 3 < URI_BYTES_MAX);
const _: () = assert!(CHUNK_LINE_BYTES_MAX <= TRAILER_BYTES_MAX);
const _: () = assert!(BUCKET_NAME_BYTES_MIN < BUCKET_NAME_BYTES_MAX);
