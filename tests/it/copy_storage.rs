//! `esmd copy-storage`: a real daemon fills an SQLite file (queues with settings and tags, a
//! dead-letter queue, FIFO groups and deduplication, messages visible, in flight and delayed),
//! stops, and the real binary copies the file into an empty PostgreSQL database; a `PgStore`
//! on that database then holds every queue and message in its state, FIFO order and the
//! deduplication window carry over, and a second copy into the now full database is refused
//! without writing anything.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use esmd::clock::Clock;
use esmd::domain::message::NewMessage;
use esmd::domain::queue::QueueName;
use esmd::store::{PgStore, QueueStore};
use sqlx::postgres::PgConnectOptions;
use tempfile::TempDir;

use crate::common::api::sdk_client;
use crate::common::process::{self, EsmdProcess};
use crate::conformance::harness;

/// The URL of a harness database, as a user would write it.
fn url_of(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().expect("a database")
    )
}

async fn copy(dir: &std::path::Path, url: &str) -> std::process::Output {
    process::command(dir)
        .args(["copy-storage", "--from", "esmd.db", "--to", url])
        .output()
        .await
        .expect("run esmd copy-storage")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_storage_moves_every_queue_and_message_into_postgres_and_refuses_a_full_database() {
    let Some(options) = harness::database().await else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let esmd = EsmdProcess::start(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"@DIR@/esmd.db\"\n",
        &[],
    )
    .await;
    let sqs = sdk_client(&esmd.url(), "secret");
    let dlq = sqs.create_queue().queue_name("dead").send().await.unwrap();
    let redrive = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dead","maxReceiveCount":"3"}"#;
    let work = sqs
        .create_queue()
        .queue_name("work")
        .attributes(QueueAttributeName::VisibilityTimeout, "600")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .tags("team", "pay")
        .send()
        .await
        .unwrap();
    let fifo = sqs
        .create_queue()
        .queue_name("orders.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap();
    let (work_url, fifo_url) = (work.queue_url().unwrap(), fifo.queue_url().unwrap());
    for i in 0..5 {
        sqs.send_message()
            .queue_url(work_url)
            .message_body(format!("w{i}"))
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(work_url)
        .message_body("later")
        .delay_seconds(900)
        .send()
        .await
        .unwrap();
    // Two received: in flight for 600 s.
    let taken = sqs
        .receive_message()
        .queue_url(work_url)
        .max_number_of_messages(2)
        .send()
        .await
        .unwrap();
    assert_eq!(taken.messages().len(), 2);
    for i in 0..4 {
        sqs.send_message()
            .queue_url(fifo_url)
            .message_body(format!("o{i}"))
            .message_group_id("g")
            .message_deduplication_id(format!("d{i}"))
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(dlq.queue_url().unwrap())
        .message_body("dead one")
        .send()
        .await
        .unwrap();
    esmd.stop().await;

    let url = url_of(&options);
    let out = copy(dir.path(), &url).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("queues: 3 rows"), "{stdout}");
    assert!(stdout.contains("messages: 11 rows"), "{stdout}");

    let pg = PgStore::connect(options.clone(), Clock::System, Default::default())
        .await
        .expect("connect");
    let name = |n: &str| QueueName::parse(n).unwrap();
    let names: Vec<String> = pg
        .queues()
        .await
        .unwrap()
        .iter()
        .map(|q| q.name.as_str().to_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let work_q = pg.queue(&name("work")).await.unwrap();
    assert_eq!(work_q.settings.visibility_timeout, Duration::from_secs(600));
    assert_eq!(
        work_q
            .settings
            .redrive
            .as_ref()
            .map(|r| r.max_receive_count),
        Some(3)
    );
    assert_eq!(
        work_q.tags,
        BTreeMap::from([("team".to_owned(), "pay".to_owned())])
    );
    let counts = pg.counts(&name("work")).await.unwrap();
    let kept: Vec<(String, u64)> = pg
        .all_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(q, c)| (q.as_str().to_owned(), c.visible + c.in_flight + c.delayed))
        .collect();
    assert_eq!(
        kept,
        [
            ("dead".to_owned(), 1),
            ("orders.fifo".to_owned(), 4),
            ("work".to_owned(), 6)
        ],
        "the kept counts (a /metrics scrape's) agree with the copied rows"
    );
    assert_eq!(
        (counts.visible, counts.in_flight, counts.delayed),
        (3, 2, 1),
        "every message in the state it had"
    );
    // FIFO: order and the deduplication window carried over.
    let again = pg
        .send(
            &name("orders.fifo"),
            vec![NewMessage {
                body: "o0 again".into(),
                group_id: Some("g".into()),
                dedup_id: Some("d0".into()),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    assert!(again[0].is_ok());
    let got = pg.receive(&name("orders.fifo"), 10, None).await.unwrap();
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["o0", "o1", "o2", "o3"],
        "order kept, the duplicate dropped"
    );
    // New rows continue after the copied ids.
    pg.send(
        &name("work"),
        vec![NewMessage {
            body: "after".into(),
            ..Default::default()
        }],
    )
    .await
    .unwrap();
    assert_eq!(pg.counts(&name("work")).await.unwrap().visible, 4);
    pg.close().await;

    let refused = copy(dir.path(), &url).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("already holds 3 queue(s)") && stderr.contains("nothing was copied"),
        "{stderr}"
    );
}
