//! The floors: the bare cost of each hop a post takes, measured on this machine in the same
//! run, so every figure can be read as a multiple of what the hardware and libraries allow.

use crate::stats::Summary;
use anyhow::{Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const PAYLOAD: [u8; 200] = [b'x'; 200];

#[derive(Debug, Clone, Serialize)]
pub struct Floors {
    /// gRPC health Check against the coordinator: one unary round trip on loopback.
    pub grpc_unary: Summary,
    /// Unary calls per second with 64 in flight on one channel.
    pub grpc_unary_calls_per_sec: f64,
    /// Persistent publish on a durable queue, publisher confirm and consume, one at a time.
    pub rabbitmq_publish_confirm_consume: Option<Summary>,
    /// write(200 B) + fdatasync in the data directory.
    pub fdatasync: Summary,
}

/// How many samples each floor takes.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub grpc: usize,
    pub rabbit: usize,
    pub fsync: usize,
    pub throughput_for: Duration,
}

pub async fn measure(coordinator: &str, amqp_url: Option<&str>, dir: &Path, sizes: Sizes) -> Result<Floors> {
    let (grpc_unary, grpc_unary_calls_per_sec) = grpc(coordinator, sizes).await?;
    let rabbitmq_publish_confirm_consume = match amqp_url {
        Some(url) => Some(rabbit(url, sizes.rabbit).await.context("RabbitMQ floor")?),
        None => None,
    };
    let fdatasync = fsync(dir, sizes.fsync).await.context("fdatasync floor")?;
    Ok(Floors {
        grpc_unary,
        grpc_unary_calls_per_sec,
        rabbitmq_publish_confirm_consume,
        fdatasync,
    })
}

async fn grpc(coordinators: &str, sizes: Sizes) -> Result<(Summary, f64)> {
    // Every coordinator serves health, leader or not: the first one will do.
    let addresses = tinysns_common::coordinators::parse_addresses(coordinators, 9000).map_err(anyhow::Error::msg)?;
    let channel = tinysns_common::grpc::channel(&addresses[0], Duration::from_secs(1))?;
    let client = HealthClient::new(channel);
    let check = |mut client: HealthClient<tonic::transport::Channel>| async move {
        client
            .check(HealthCheckRequest { service: String::new() })
            .await
            .context("health check against the coordinator")
    };
    for _ in 0..sizes.grpc / 10 + 1 {
        check(client.clone()).await?;
    }
    let mut samples = Vec::with_capacity(sizes.grpc);
    for _ in 0..sizes.grpc {
        let started = Instant::now();
        check(client.clone()).await?;
        samples.push(started.elapsed());
    }
    let summary = Summary::of(&mut samples).context("no gRPC samples")?;

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + sizes.throughput_for;
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (client, done) = (client.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    check(client.clone()).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("gRPC throughput worker")??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    Ok((summary, rate))
}

async fn rabbit(url: &str, count: usize) -> Result<Summary> {
    let publisher = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let consumer_conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let channel = publisher.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let queue = format!("tinysns-bench.floor.{:08x}", rand::random::<u32>());
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, FieldTable::default())
        .await?;
    let consume_channel = consumer_conn.create_channel().await?;
    let mut deliveries = consume_channel
        .basic_consume(
            queue.as_str().into(),
            "bench-floor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + count / 10 + 1 {
        let started = Instant::now();
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &PAYLOAD,
                persistent.clone(),
            )
            .await?;
        let (confirmation, delivery) = tokio::join!(confirm, deliveries.next());
        anyhow::ensure!(confirmation?.is_ack(), "the broker refused a publish");
        let delivery = delivery.context("the consumer stopped")??;
        let elapsed = started.elapsed();
        delivery.ack(BasicAckOptions::default()).await?;
        // The first tenth warms up.
        if i > count / 10 {
            samples.push(elapsed);
        }
    }
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = publisher.close(200, "bench done".into()).await;
    let _ = consumer_conn.close(200, "bench done".into()).await;
    Summary::of(&mut samples).context("no RabbitMQ samples")
}

async fn fsync(dir: &Path, count: usize) -> Result<Summary> {
    let path = dir.join(format!("bench-fsync-{:08x}", rand::random::<u32>()));
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut samples = Vec::with_capacity(count);
        for i in 0..count + count / 10 + 1 {
            let started = Instant::now();
            file.write_all(&PAYLOAD)?;
            file.sync_data()?;
            if i > count / 10 {
                samples.push(started.elapsed());
            }
        }
        drop(file);
        let _ = std::fs::remove_file(&path);
        Summary::of(&mut samples).context("no fsync samples")
    })
    .await
    .context("fsync task")?
}
