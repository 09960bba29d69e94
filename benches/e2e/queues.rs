//! The cost of many queues (issue 14 point 8): `GET /metrics` with `ESMD_BENCH_QUEUES` [1000]
//! queues (the `bench` queue and the rest created at run time, as CreateQueue would), each
//! holding `ESMD_BENCH_QUEUE_MESSAGES` [10] messages, scraped `ESMD_BENCH_SCRAPES` [20] times
//! over HTTP; and one retention sweep over all of them. Prints the figures; asserts nothing
//! timed.

use std::collections::BTreeMap;
use std::time::Instant;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueName, QueueSettings};

use crate::harness::{env_or, percentile, Daemon, Setup};
use crate::say;

/// What one run measured.
pub struct QueuesResult {
    pub queues: usize,
    pub scrape_ms: Vec<f64>,
    pub bytes: usize,
    pub sweep_ms: f64,
}

pub async fn run() -> QueuesResult {
    let queues: usize = env_or("ESMD_BENCH_QUEUES", 1000);
    let per_queue: usize = env_or("ESMD_BENCH_QUEUE_MESSAGES", 10);
    let scrapes: usize = env_or("ESMD_BENCH_SCRAPES", 20);
    let d = Daemon::start(Setup {
        visibility_timeout: "30s",
        mapping: None,
    })
    .await;
    let store = d.daemon.store().clone();
    let mut names = vec![d.queue_name()];
    for k in 1..queues {
        let name = QueueName::parse(&format!("q{k:05}")).expect("a queue name");
        store
            .create_queue(&name, &QueueSettings::default(), &BTreeMap::new())
            .await
            .expect("create queue");
        names.push(name);
    }
    for q in &names {
        let batch = (0..per_queue)
            .map(|i| NewMessage::body(format!("m{i}")))
            .collect::<Vec<_>>();
        for chunk in batch.chunks(10) {
            store.send(q, chunk.to_vec()).await.expect("send");
        }
    }
    let http = reqwest::Client::new();
    let url = format!("http://{}/metrics", d.daemon.addr());
    let mut scrape_ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..scrapes {
        let t = Instant::now();
        let body = http
            .get(&url)
            .send()
            .await
            .expect("GET /metrics")
            .bytes()
            .await
            .expect("metrics body");
        scrape_ms.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = body.len();
    }
    scrape_ms.sort_by(f64::total_cmp);
    let t = Instant::now();
    store.sweep().await.expect("sweep");
    let sweep_ms = t.elapsed().as_secs_f64() * 1e3;
    say!(
        "queues {queues} x {per_queue} msgs: GET /metrics p50 {:.1} ms, max {:.1} ms, {bytes} bytes; one sweep {sweep_ms:.1} ms",
        percentile(&scrape_ms, 50.0),
        scrape_ms.last().copied().unwrap_or(f64::NAN)
    );
    d.stop().await;
    QueuesResult {
        queues,
        scrape_ms,
        bytes,
        sweep_ms,
    }
}
