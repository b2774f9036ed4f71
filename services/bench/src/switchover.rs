//! The switchover phase: under a steady load, the operator's planned switchover of one
//! cluster's master to its in-sync slave (`Membership.Switchover`, what a rolling upgrade
//! asks for). It reports how long the call took and the longest stretch in which a cluster
//! acknowledged no write: how long writes were unavailable.

use crate::analysis;
use crate::driver::{AckRecord, Phase};
use crate::workload::Graph;
use serde::Serialize;
use std::time::Instant;
use tinysns_stack::topology::Topology;

#[derive(Debug, Clone, Serialize, Default)]
pub struct SwitchoverReport {
    pub skipped: Option<String>,
    pub cluster: Option<u32>,
    pub from: Option<u32>,
    pub to: Option<u32>,
    /// From the request until the coordinator answered that the slave is master.
    pub answered_ms: Option<f64>,
    /// The longest stretch, in any cluster, without an acknowledged write of the phase
    /// around the switchover.
    pub longest_write_gap_any_cluster_ms: Option<f64>,
    /// Acknowledged posts of the phase missing from a follower's re-read timeline.
    pub acknowledged_lost: u64,
}

/// What the request did.
pub struct Asked {
    pub cluster: u32,
    pub from: u32,
    pub to: u32,
    pub at: Instant,
    pub answered_after: std::time::Duration,
}

/// Asks the coordinator to hand `cluster` from its master to its best in-sync slave.
pub async fn ask(t: &Topology, cluster: u32) -> anyhow::Result<Asked> {
    let from = t
        .master_server(cluster)
        .await
        .ok_or_else(|| anyhow::anyhow!("cluster {cluster} has no master"))?;
    let at = Instant::now();
    let reply = t
        .switchover(cluster, None)
        .await
        .map_err(|status| anyhow::anyhow!("switchover refused: {}", status.message()))?;
    let answered_after = at.elapsed();
    let to = reply
        .master
        .map(|m| m.member_id)
        .ok_or_else(|| anyhow::anyhow!("the coordinator named no new master"))?;
    tracing::info!(cluster, from, to, term = reply.term, ?answered_after, "switched over");
    Ok(Asked {
        cluster,
        from,
        to,
        at,
        answered_after,
    })
}

impl SwitchoverReport {
    pub fn skipped(why: impl Into<String>) -> Self {
        Self {
            skipped: Some(why.into()),
            ..Default::default()
        }
    }

    pub fn new(asked: &Asked, graph: &Graph, acks: &[AckRecord], lost: &std::collections::HashSet<u64>) -> Self {
        let acknowledged_lost = acks
            .iter()
            .filter(|a| a.ok && a.phase == Phase::Switchover && lost.contains(&a.post_id))
            .count() as u64;
        Self {
            skipped: None,
            cluster: Some(asked.cluster),
            from: Some(asked.from),
            to: Some(asked.to),
            answered_ms: Some(asked.answered_after.as_secs_f64() * 1e3),
            longest_write_gap_any_cluster_ms: analysis::longest_write_gap(graph, acks, Phase::Switchover, asked.at),
            acknowledged_lost,
        }
    }

    /// One line of the table.
    pub fn line(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
        match &self.skipped {
            Some(why) => format!("planned switchover: skipped ({why})"),
            None => format!(
                "planned switchover of cluster {} ({} -> {}): answered after {}, longest write gap of any cluster {}; acknowledged posts lost: {}",
                self.cluster.unwrap_or(0),
                self.from.unwrap_or(0),
                self.to.unwrap_or(0),
                ms(self.answered_ms),
                ms(self.longest_write_gap_any_cluster_ms),
                self.acknowledged_lost
            ),
        }
    }
}
