//! One worker (`server.worker_threads = 1`), several misbehaving clients on
//! it: one pipelines hundreds of requests and never reads an answer (its
//! socket fills), one stops mid-head, one stops mid-body on a route whose
//! body credgate reads, one hangs up mid-request. None of them stalls the
//! worker: another client's requests on the same worker are all answered
//! while they hold on (issue 28). The timeouts below only keep a broken
//! build from hanging the suite; nothing here measures speed.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::time::Duration;

use common::*;
use credgate::emulator::fixtures::*;
use harness::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// More answers than loopback socket buffers hold (each echoes the path).
const PIPELINED: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_clients_do_not_stall_their_worker() {
    let env = Env::with(fixtures(), |b| b.server("worker_threads = 1")).await;
    let alice = env.member("alice");
    let addr = env.gw.addr;
    // A long path: each answer echoes it, so unread answers fill the
    // pipeliner's socket and the worker's writes to it would block.
    let long = p(&format!("/sdk/proxy/salesforce/{}", "x".repeat(6000)));
    let one = format!(
        "GET {long} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {alice}\r\nx-paragon-credential: {DEMO_SALESFORCE_ALICE}\r\n\r\n"
    );
    let mut pipeliner = TcpStream::connect(addr).await.unwrap();
    let burst = one.repeat(PIPELINED);
    let writer = tokio::spawn(async move {
        // The worker stops reading once its answers back up: this write
        // may never finish, and must not need to.
        let _ = pipeliner.write_all(burst.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(pipeliner);
    });
    // Mid-head, then silent.
    let mut half_head = TcpStream::connect(addr).await.unwrap();
    half_head
        .write_all(format!("GET {} HTTP/1.1\r\nhost: gw\r\nauthoriz", p("/sdk/me")).as_bytes())
        .await
        .unwrap();
    // Mid-body on a sync create (credgate reads that body), then silent.
    let mut half_body = TcpStream::connect(addr).await.unwrap();
    half_body
        .write_all(
            format!(
                "POST /api/syncs HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {alice}\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{{\"integration\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Mid-request, then gone.
    let mut gone = TcpStream::connect(addr).await.unwrap();
    gone.write_all(format!("GET {} HTTP/1.1\r\nhost: gw\r\n", p("/sdk/me")).as_bytes())
        .await
        .unwrap();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile a well-behaved client on the same (only) worker.
    let cl = client();
    let served = tokio::time::timeout(Duration::from_secs(20), async {
        let mut ok = 0;
        for i in 0..30 {
            let path = p(&format!("/sdk/proxy/salesforce/fine-{i}"));
            let got = send(
                &cl,
                req(
                    "GET",
                    &env.gw,
                    &path,
                    Some(&alice),
                    &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
                    "",
                ),
            )
            .await;
            assert_eq!(got.status, 200, "{:?}", got.body);
            ok += 1;
        }
        ok
    })
    .await
    .expect("the other client's requests were answered while the misbehaving ones held on");
    assert_eq!(served, 30);
    // The pipeliner's requests did reach the worker, which stopped taking
    // more once their unread answers filled the socket: it was held up
    // there, and still served the other client.
    let pipelined = env.traffic().iter().filter(|r| r.path.len() > 6000).count();
    assert!(pipelined >= 1, "the pipeliner was served at all");
    assert!(
        pipelined < PIPELINED,
        "its unread answers backed up ({pipelined} of {PIPELINED} forwarded)"
    );
    drop(half_head);
    drop(half_body);
    writer.abort();
}
