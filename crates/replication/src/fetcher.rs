//! The replica fetcher: one task per followed partition.

use std::sync::Arc;
use std::time::Duration;

use arctern_core::{CoreError, FollowerFetcher, Partition, ReplicaEndpoint};
use arctern_security::ClusterSecret;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::task::JoinHandle;

use crate::client::{ClientError, KafkaConnection};

/// Fetch v12 is the last version that names topics (13+ use topic ids).
const FETCH_VERSION: i16 = 12;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// Pause after an error before trying again.
const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Bound on the membership proof exchange of a new connection.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// This follower's broker id (sent as `replica_id`).
    pub local_id: i32,
    /// `replica.fetch.max.bytes`
    pub max_bytes: i32,
    /// `replica.fetch.wait.max.ms`
    pub max_wait_ms: i32,
    /// `cluster.secret`: when set, each connection to a leader first proves this node's
    /// membership (SASL mechanism ARCTERN-CLUSTER); leaders refuse replica fetches without.
    pub cluster_secret: Option<Arc<ClusterSecret>>,
    /// Set when the inter-broker listener is SSL: the truststore, and the keystore as the
    /// client certificate (as Kafka's brokers use theirs).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// [`FollowerFetcher`] over the Kafka protocol.
#[derive(Debug, Clone)]
pub struct KafkaFollowerFetcher {
    config: FetcherConfig,
}

impl KafkaFollowerFetcher {
    pub fn new(config: FetcherConfig) -> Self {
        KafkaFollowerFetcher { config }
    }
}

impl FollowerFetcher for KafkaFollowerFetcher {
    fn start(
        &self,
        partition: Arc<Partition>,
        leader: ReplicaEndpoint,
        leader_epoch: i32,
    ) -> JoinHandle<()> {
        let config = self.config.clone();
        tokio::spawn(async move {
            Replicator {
                config,
                partition,
                leader,
                leader_epoch,
            }
            .run()
            .await
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("leader answered {0:?}")]
    Leader(ResponseError),
    #[error("leader answered error code {0}")]
    UnknownCode(i16),
    #[error("response does not carry the partition")]
    Missing,
}

struct Replicator {
    config: FetcherConfig,
    partition: Arc<Partition>,
    leader: ReplicaEndpoint,
    leader_epoch: i32,
}

impl Replicator {
    fn addr(&self) -> String {
        format!("{}:{}", self.leader.host, self.leader.port)
    }

    /// Runs until aborted by the broker (a leadership change restarts it), or until the
    /// partition stops following this leader at this epoch.
    async fn run(self) {
        let p = &self.partition;
        tracing::info!(topic = %p.topic, partition = p.index, leader = self.leader.id, leader_epoch = self.leader_epoch, "replica fetcher started");
        let client_id = format!("arctern-replica-{}", self.config.local_id);
        let mut conn: Option<KafkaConnection> = None;
        let mut truncated = false;
        let mut backoff = BACKOFF;
        loop {
            if p.followed_leader() != Some((self.leader.id, self.leader_epoch)) || p.is_closed() {
                return;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.connect(&client_id).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::debug!(error = %e, "replica fetcher cannot reach leader");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let step = if truncated {
                self.fetch_once(c).await
            } else {
                self.truncate_by_epoch(c).await.map(|()| truncated = true)
            };
            match step {
                Ok(()) => backoff = BACKOFF,
                Err(e) => {
                    match &e {
                        FetchError::Client(_) => conn = None,
                        FetchError::Leader(ResponseError::OffsetOutOfRange) => truncated = false,
                        FetchError::Core(CoreError::NotLeaderOrFollower(_))
                        | FetchError::Core(CoreError::ShuttingDown) => return,
                        _ => {}
                    }
                    tracing::debug!(topic = %p.topic, partition = p.index, leader = self.leader.id, error = %e, "replica fetch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn connect(&self, client_id: &str) -> Result<KafkaConnection, ClientError> {
        let mut c =
            KafkaConnection::connect_with(&self.addr(), client_id, self.config.tls.clone()).await?;
        if let Some(secret) = &self.config.cluster_secret {
            if let Err(e) = c
                .authenticate_as_node(secret, self.config.local_id, CALL_TIMEOUT)
                .await
            {
                tracing::warn!(leader = self.leader.id, addr = %self.addr(), error = %e, "leader refused this node's cluster membership proof");
                return Err(e);
            }
        }
        Ok(c)
    }

    fn topic_name(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.partition.topic.clone()))
    }

    /// KIP-279: ask the leader where our latest epoch ends on its log and cut our log there;
    /// if the leader does not know our epoch, step back to the latest epoch it does know
    /// and repeat. Never truncates by the local high watermark (KIP-101).
    async fn truncate_by_epoch(&self, c: &mut KafkaConnection) -> Result<(), FetchError> {
        let p = &self.partition;
        for _ in 0..1000 {
            let Some(latest) = p.latest_epoch()? else {
                return Ok(()); // empty log: nothing can diverge
            };
            let (leader_epoch, end_offset) = self.leader_epoch_end(c, latest).await?;
            let local_end = p.log_end_offset()?;
            if leader_epoch < 0 || end_offset < 0 {
                // The leader knows no epoch <= ours: all of our log diverges.
                let start = p.log_start_offset()?;
                tracing::info!(topic = %p.topic, partition = p.index, to = start, "truncating: leader has none of our epochs");
                p.truncate_to(start)?;
                return Ok(());
            }
            match p.local_epoch_end(leader_epoch)? {
                Some((epoch, local_epoch_end)) if epoch == leader_epoch => {
                    let to = end_offset.min(local_epoch_end).min(local_end);
                    if to < local_end {
                        tracing::info!(topic = %p.topic, partition = p.index, epoch, to, from = local_end, "truncating divergent tail by leader epoch");
                        p.truncate_to(to)?;
                    }
                    return Ok(());
                }
                Some((_, local_epoch_end)) => {
                    // We lack the leader's epoch: drop our later epochs and ask again.
                    tracing::info!(topic = %p.topic, partition = p.index, leader_epoch, to = local_epoch_end, "truncating epochs the leader does not have");
                    p.truncate_to(local_epoch_end)?;
                    if local_epoch_end >= local_end {
                        return Ok(());
                    }
                }
                None => {
                    let start = p.log_start_offset()?;
                    p.truncate_to(start)?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn leader_epoch_end(
        &self,
        c: &mut KafkaConnection,
        epoch: i32,
    ) -> Result<(i32, i64), FetchError> {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.config.local_id))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(self.topic_name())
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(self.partition.index)
                    .with_current_leader_epoch(self.leader_epoch)
                    .with_leader_epoch(epoch)])]);
        let resp = c
            .call(
                &req,
                OFFSET_FOR_LEADER_EPOCH_VERSION,
                Duration::from_secs(30),
            )
            .await?;
        let part = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition == self.partition.index)
            .ok_or(FetchError::Missing)?;
        check_code(part.error_code)?;
        Ok((part.leader_epoch, part.end_offset))
    }

    async fn fetch_once(&self, c: &mut KafkaConnection) -> Result<(), FetchError> {
        let p = &self.partition;
        let offset = p.log_end_offset()?;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(self.config.local_id))
            .with_max_wait_ms(self.config.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(self.config.max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(self.topic_name())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(p.index)
                    .with_current_leader_epoch(self.leader_epoch)
                    .with_fetch_offset(offset)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(self.config.max_bytes)])]);
        let wait = Duration::from_millis(self.config.max_wait_ms.max(0) as u64);
        let resp = c
            .call(&req, FETCH_VERSION, wait + Duration::from_secs(30))
            .await?;
        check_code(resp.error_code)?;
        let data = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|d| d.partition_index == p.index)
            .ok_or(FetchError::Missing)?;
        if data.error_code == ResponseError::OffsetOutOfRange.code()
            && data.log_start_offset > offset
        {
            // The leader's retention moved past everything we have.
            tracing::info!(topic = %p.topic, partition = p.index, start = data.log_start_offset, "leader log starts past ours; restarting the local log there");
            p.truncate_fully_and_start_at(data.log_start_offset)?;
            return Ok(());
        }
        check_code(data.error_code)?;
        if let Some(records) = data.records.filter(|r| !r.is_empty()) {
            let end = p.append_replicated(&records, self.leader_epoch)?;
            if p.fsync_before_ack() {
                // Our next fetch offset tells the leader we hold these durably.
                p.wait_durable(end).await?;
            }
        }
        p.update_follower_high_watermark(data.high_watermark);
        // Follow the leader's log start (an AMQP queue's reclaimed prefix, DeleteRecords),
        // as Kafka's followers do, so a follower does not keep or serve what its leader
        // has dropped, also after it becomes the leader.
        if data.log_start_offset > p.log_start_offset()? {
            p.follow_log_start(data.log_start_offset)?;
        }
        Ok(())
    }
}

fn check_code(code: i16) -> Result<(), FetchError> {
    if code == 0 {
        return Ok(());
    }
    match ResponseError::try_from_code(code) {
        Some(e) => Err(FetchError::Leader(e)),
        None => Err(FetchError::UnknownCode(code)),
    }
}
