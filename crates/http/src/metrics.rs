//! `/metrics`: a snapshot of the node's numbers (gathered object by object, each under its
//! own lock only) rendered in the Prometheus text format by `prometheus-client`.
//!
//! Names follow RabbitMQ's Prometheus plugin (`rabbitmq_*`) and kafka_exporter (`kafka_*`),
//! so stock dashboards work; `arctern_*` are the broker's own. Each node reports what it
//! serves: the partitions it leads, the groups it coordinates, its AMQP connections — so
//! Prometheus scrapes every node.

pub use arctern_storage::stats::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// One AMQP queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSample {
    pub vhost: String,
    pub queue: String,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
}

/// One partition this node leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSample {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: usize,
    pub in_sync: usize,
    /// The high watermark (what consumers can read up to; kafka_exporter's "current").
    pub current_offset: i64,
    pub oldest_offset: i64,
}

/// One committed offset of a group coordinated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsetSample {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// High watermark minus committed, when this node has the partition's log.
    pub lag: Option<i64>,
}

/// RabbitMQ's global counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmqpTotals {
    pub received: u64,
    pub confirmed: u64,
    pub delivered: u64,
    pub acknowledged: u64,
    pub redelivered: u64,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub queues: Vec<QueueSample>,
    pub amqp_connections: u64,
    pub amqp_channels: u64,
    pub kafka_connections: u64,
    pub amqp_totals: AmqpTotals,
    pub partitions: Vec<PartitionSample>,
    pub group_offsets: Vec<GroupOffsetSample>,
    pub alarm_memory: bool,
    pub alarm_disk: bool,
    pub kafka_requests: Vec<(String, u64)>,
    pub fsyncs: u64,
    pub raft_term: u64,
    pub raft_commit_index: u64,
    pub disk_free_bytes: Option<u64>,
    pub latency: Latencies,
    pub traffic: Traffic,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub leader_elections: u64,
    pub storage_corruptions: u64,
    /// Resident set size of the broker process, where the OS tells (Linux).
    pub resident_memory_bytes: Option<u64>,
}

/// The histograms.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// By Kafka API name.
    pub kafka_requests: Vec<(String, HistogramSnapshot)>,
    /// Produce requests with acks=all.
    pub kafka_produce_acks_all: HistogramSnapshot,
    /// By AMQP method name (RabbitMQ's `class.method`).
    pub amqp_methods: Vec<(String, HistogramSnapshot)>,
    /// basic.publish (confirm mode) to its confirm.
    pub amqp_publish_to_confirm: HistogramSnapshot,
    pub fsync: HistogramSnapshot,
    pub sync_batch_records: HistogramSnapshot,
    pub sync_batch_bytes: HistogramSnapshot,
}

/// Bytes to and from clients, by protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    pub kafka_received: u64,
    pub kafka_sent: u64,
    pub amqp_received: u64,
    pub amqp_sent: u64,
}

/// The resident set size from `/proc/self/status` text (`VmRSS:   1234 kB`).
pub fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => n.checked_mul(1024),
        _ => None,
    }
}

/// This process's resident memory (Linux; `None` elsewhere).
pub fn process_resident_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| resident_bytes(&s))
}

/// Consumer lag as kafka_exporter computes it: log end (high watermark) minus the
/// committed offset, never negative (a commit may run ahead of a lagging replica's view).
pub fn lag(high_watermark: i64, committed: i64) -> i64 {
    (high_watermark - committed).max(0)
}

type Labels = Vec<(String, String)>;

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    registry.register(name, help, f.clone());
    f
}

fn gauge(registry: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    registry.register(name, help, g);
}

/// `name` without `_total`: prometheus-client appends it to counters.
fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

fn l(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Queues, partitions and group offsets: RabbitMQ's per-queue and kafka_exporter's names.
#[derive(Debug)]
struct Objects {
    queues: Vec<QueueSample>,
    partitions: Vec<PartitionSample>,
    group_offsets: Vec<GroupOffsetSample>,
}

/// One gauge family, a sample per item (`None` values are left out).
fn family<'a, T, L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    items: &'a [T],
    labels: impl Fn(&'a T) -> L,
    value: impl Fn(&'a T) -> Option<i64>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for it in items {
        if let Some(v) = value(it) {
            m.encode_family(&labels(it))?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

impl Collector for Objects {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        fn q(q: &QueueSample) -> [(&'static str, &str); 2] {
            [("vhost", q.vhost.as_str()), ("queue", q.queue.as_str())]
        }
        family(
            &mut enc,
            "rabbitmq_queue_messages_ready",
            "Messages ready to be delivered to consumers",
            &self.queues,
            q,
            |q| Some(i(q.ready)),
        )?;
        family(
            &mut enc,
            "rabbitmq_queue_messages_unacked",
            "Messages delivered to consumers but not yet acknowledged",
            &self.queues,
            q,
            |q| Some(i(q.unacked)),
        )?;
        family(
            &mut enc,
            "rabbitmq_queue_consumers",
            "Consumers on a queue",
            &self.queues,
            q,
            |q| Some(i(q.consumers)),
        )?;

        fn p(p: &PartitionSample) -> PartLabels<'_> {
            PartLabels((("topic", p.topic.as_str()), ("partition", p.partition)))
        }
        let ps = &self.partitions;
        family(
            &mut enc,
            "kafka_topic_partition_current_offset",
            "Current Offset of a Broker at Topic/Partition",
            ps,
            p,
            |x| Some(x.current_offset),
        )?;
        family(
            &mut enc,
            "kafka_topic_partition_oldest_offset",
            "Oldest Offset of a Broker at Topic/Partition",
            ps,
            p,
            |x| Some(x.oldest_offset),
        )?;
        family(
            &mut enc,
            "kafka_topic_partition_in_sync_replica",
            "Number of In-Sync Replicas for this Topic/Partition",
            ps,
            p,
            |x| Some(x.in_sync as i64),
        )?;
        family(
            &mut enc,
            "kafka_topic_partition_under_replicated_partition",
            "1 if Topic/Partition is under Replicated",
            ps,
            p,
            |x| Some(i64::from(x.in_sync < x.replicas)),
        )?;
        family(
            &mut enc,
            "kafka_topic_partition_leader",
            "Leader Broker ID of this Topic/Partition",
            ps,
            p,
            |x| Some(i64::from(x.leader)),
        )?;
        family(
            &mut enc,
            "kafka_topic_partition_replicas",
            "Number of Replicas for this Topic/Partition",
            ps,
            p,
            |x| Some(x.replicas as i64),
        )?;

        fn g(g: &GroupOffsetSample) -> GroupLabels<'_> {
            GroupLabels(g.group.as_str(), g.topic.as_str(), g.partition)
        }
        let gs = &self.group_offsets;
        family(
            &mut enc,
            "kafka_consumergroup_current_offset",
            "Current Offset of a ConsumerGroup at Topic/Partition",
            gs,
            g,
            |x| Some(x.committed),
        )?;
        family(
            &mut enc,
            "kafka_consumergroup_lag",
            "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
            gs,
            g,
            |x| x.lag,
        )?;
        Ok(())
    }
}

/// The histograms, written from their snapshots (no per-scrape registry objects).
#[derive(Debug)]
struct Histograms(Latencies);

fn histogram_family<'a, T, L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    items: &'a [T],
    labels: impl Fn(&'a T) -> (L, &'a HistogramSnapshot),
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for it in items {
        let (l, h) = labels(it);
        m.encode_family(&l)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> std::fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

impl Collector for Histograms {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let h = &self.0;
        histogram_family(
            &mut enc,
            "arctern_kafka_request_duration_seconds",
            "Kafka requests from receipt to response ready, by API",
            &h.kafka_requests,
            |(api, s)| ([("api", api.as_str())], s),
        )?;
        let acks_all = [h.kafka_produce_acks_all.clone()];
        histogram_family(
            &mut enc,
            "arctern_kafka_produce_duration_seconds",
            "Produce requests with acks=all from receipt to response ready",
            &acks_all,
            |s| ([("acks", "all")], s),
        )?;
        // basic.publish is publish-to-confirm: the publish's answer in confirm mode.
        let publish = [(
            "basic.publish".to_string(),
            h.amqp_publish_to_confirm.clone(),
        )];
        let methods: Vec<&(String, HistogramSnapshot)> = h
            .amqp_methods
            .iter()
            .chain(publish.iter().filter(|p| p.1.count > 0))
            .collect();
        histogram_family(
            &mut enc,
            "arctern_amqp_method_duration_seconds",
            "AMQP methods answered synchronously, frame in to reply sent; basic.publish: body in to confirm sent",
            &methods,
            |(m, s)| ([("method", m.as_str())], s),
        )?;
        histogram(
            &mut enc,
            "arctern_amqp_confirm_duration_seconds",
            "Publishes in confirm mode from body received to basic.ack/nack sent",
            &h.amqp_publish_to_confirm,
        )?;
        histogram(
            &mut enc,
            "arctern_fsync_duration_seconds",
            "fdatasync of the logs of Kafka partitions and AMQP queues",
            &h.fsync,
        )?;
        histogram(
            &mut enc,
            "arctern_group_commit_batch_records",
            "Records (offsets) made durable by one log fdatasync",
            &h.sync_batch_records,
        )?;
        histogram(
            &mut enc,
            "arctern_group_commit_batch_bytes",
            "Bytes made durable by one log fdatasync",
            &h.sync_batch_bytes,
        )?;
        Ok(())
    }
}

/// topic, partition (kafka_exporter's label order).
struct PartLabels<'a>(((&'static str, &'a str), (&'static str, i32)));

impl EncodeLabelSet for PartLabels<'_> {
    fn encode(&self, mut enc: LabelSetEncoder) -> std::fmt::Result {
        let ((tk, tv), (pk, pv)) = self.0;
        (tk, tv).encode(enc.encode_label())?;
        (pk, pv).encode(enc.encode_label())
    }
}

/// consumergroup, topic, partition.
struct GroupLabels<'a>(&'a str, &'a str, i32);

impl EncodeLabelSet for GroupLabels<'_> {
    fn encode(&self, mut enc: LabelSetEncoder) -> std::fmt::Result {
        ("consumergroup", self.0).encode(enc.encode_label())?;
        ("topic", self.1).encode(enc.encode_label())?;
        ("partition", self.2).encode(enc.encode_label())
    }
}

/// The Prometheus text exposition of a snapshot.
pub fn render(s: &Snapshot) -> String {
    render_owned(s.clone())
}

/// Bytes of text per series of each per-object family, rounded up, so the output is
/// allocated once (growing a 20 MB string by doubling copied it about twice over: a
/// sixth of a large scrape's time in a profile).
fn estimated_size(s: &Snapshot) -> usize {
    64 * 1024 + s.partitions.len() * 700 + s.group_offsets.len() * 260 + s.queues.len() * 400
}

/// As [`render`], consuming the snapshot: the per-object samples move into the collector
/// instead of being copied.
pub fn render_owned(mut s: Snapshot) -> String {
    let mut r = Registry::default();
    let capacity = estimated_size(&s);

    // The per-object families (a big node has hundreds of thousands of series) are
    // written straight from the snapshot by a collector: no per-series hash map.
    r.register_collector(Box::new(Objects {
        queues: std::mem::take(&mut s.queues),
        partitions: std::mem::take(&mut s.partitions),
        group_offsets: std::mem::take(&mut s.group_offsets),
    }));

    // RabbitMQ's names (rabbitmq_prometheus).
    gauge(
        &mut r,
        "rabbitmq_connections",
        "AMQP connections currently open",
        i(s.amqp_connections),
    );
    gauge(
        &mut r,
        "rabbitmq_channels",
        "AMQP channels currently open",
        i(s.amqp_channels),
    );
    let t = &s.amqp_totals;
    counter(
        &mut r,
        "rabbitmq_global_messages_received",
        "Total number of messages received from publishers",
        t.received,
    );
    counter(
        &mut r,
        "rabbitmq_global_messages_confirmed",
        "Total number of messages confirmed to publishers",
        t.confirmed,
    );
    counter(
        &mut r,
        "rabbitmq_global_messages_delivered",
        "Total number of messages delivered to consumers",
        t.delivered,
    );
    counter(
        &mut r,
        "rabbitmq_global_messages_acknowledged",
        "Total number of messages acknowledged by consumers",
        t.acknowledged,
    );
    counter(
        &mut r,
        "rabbitmq_global_messages_redelivered",
        "Total number of messages redelivered to consumers",
        t.redelivered,
    );
    gauge(
        &mut r,
        "rabbitmq_alarms_memory_used_watermark",
        "is 1 if VM memory watermark alarm is in effect",
        i64::from(s.alarm_memory),
    );
    gauge(
        &mut r,
        "rabbitmq_alarms_free_disk_space_watermark",
        "is 1 if free disk space watermark alarm is in effect",
        i64::from(s.alarm_disk),
    );

    // The broker's own.
    let conns = gauge_family(
        &mut r,
        "arctern_connections",
        "Client connections open on this node, by protocol",
    );
    conns
        .get_or_create(&l(&[("protocol", "kafka".into())]))
        .set(i(s.kafka_connections));
    conns
        .get_or_create(&l(&[("protocol", "amqp".into())]))
        .set(i(s.amqp_connections));
    let requests = Family::<Labels, Counter>::default();
    r.register(
        "arctern_kafka_requests",
        "Kafka requests served by this node, by API",
        requests.clone(),
    );
    for (api, n) in &s.kafka_requests {
        requests
            .get_or_create(&l(&[("api", api.clone())]))
            .inc_by(*n);
    }
    counter(
        &mut r,
        "arctern_log_fsyncs",
        "fsync calls on the partition logs this node holds",
        s.fsyncs,
    );
    gauge(
        &mut r,
        "arctern_raft_term",
        "The metadata quorum's current Raft term as this node sees it",
        i(s.raft_term),
    );
    gauge(
        &mut r,
        "arctern_raft_commit_index",
        "Index of the last metadata log entry applied on this node",
        i(s.raft_commit_index),
    );
    r.register_collector(Box::new(Histograms(std::mem::take(&mut s.latency))));
    let t = &s.traffic;
    let received = Family::<Labels, Counter>::default();
    r.register(
        "arctern_bytes_received",
        "Bytes read from clients, by protocol",
        received.clone(),
    );
    let sent = Family::<Labels, Counter>::default();
    r.register(
        "arctern_bytes_sent",
        "Bytes written to clients, by protocol",
        sent.clone(),
    );
    for (protocol, inb, outb) in [
        ("kafka", t.kafka_received, t.kafka_sent),
        ("amqp", t.amqp_received, t.amqp_sent),
    ] {
        let labels = l(&[("protocol", protocol.into())]);
        received.get_or_create(&labels).inc_by(inb);
        sent.get_or_create(&labels).inc_by(outb);
    }
    counter(
        &mut r,
        "rabbitmq_connection_incoming_bytes",
        "Total number of bytes received on a connection",
        t.amqp_received,
    );
    counter(
        &mut r,
        "rabbitmq_connection_outgoing_bytes",
        "Total number of bytes sent on a connection",
        t.amqp_sent,
    );
    counter(
        &mut r,
        "arctern_isr_shrinks",
        "ISR changes committed by this node as leader that removed replicas",
        s.isr_shrinks,
    );
    counter(
        &mut r,
        "arctern_isr_expands",
        "ISR changes committed by this node as leader that added replicas",
        s.isr_expands,
    );
    counter(
        &mut r,
        "arctern_leader_elections",
        "Leader changes seen on partitions this node holds a replica of",
        s.leader_elections,
    );
    counter(
        &mut r,
        "arctern_storage_corruptions",
        "Reads refused because stored data failed verification",
        s.storage_corruptions,
    );
    if let Some(rss) = s.resident_memory_bytes {
        gauge(
            &mut r,
            "arctern_process_resident_memory_bytes",
            "Resident memory of the broker process",
            i(rss),
        );
        gauge(
            &mut r,
            "rabbitmq_process_resident_memory_bytes",
            "Memory used in bytes",
            i(rss),
        );
    }
    if let Some(free) = s.disk_free_bytes {
        gauge(
            &mut r,
            "arctern_disk_free_bytes",
            "Free bytes on the file system of the data directory",
            i(free),
        );
    }

    let mut out = String::with_capacity(capacity);
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, prefix: &str) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map(String::from)
    }

    #[test]
    fn resident_memory_comes_from_vmrss_in_kib() {
        let status = "Name:\tarctern\nVmPeak:\t  9999 kB\nVmRSS:\t    2048 kB\nThreads: 4\n";
        assert_eq!(resident_bytes(status), Some(2048 * 1024));
        assert_eq!(resident_bytes("Name: x\n"), None);
        assert_eq!(resident_bytes("VmRSS: lots kB\n"), None);
        #[cfg(target_os = "linux")]
        assert!(process_resident_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn histograms_render_as_prometheus_histograms() {
        static H: arctern_storage::stats::Histogram = arctern_storage::stats::Histogram::latency();
        H.observe_duration(std::time::Duration::from_millis(3));
        H.observe_duration(std::time::Duration::from_millis(30));
        let s = Snapshot {
            latency: Latencies {
                kafka_requests: vec![("Produce".into(), H.snapshot())],
                fsync: H.snapshot(),
                amqp_publish_to_confirm: H.snapshot(),
                ..Latencies::default()
            },
            traffic: Traffic {
                kafka_received: 100,
                amqp_sent: 7,
                ..Traffic::default()
            },
            isr_shrinks: 2,
            resident_memory_bytes: Some(4096),
            ..Snapshot::default()
        };
        let text = render(&s);
        assert!(text.contains("# TYPE arctern_kafka_request_duration_seconds histogram"));
        let p = "arctern_kafka_request_duration_seconds";
        assert_eq!(
            value(&text, &format!("{p}_count{{api=\"Produce\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(
                &text,
                &format!("{p}_bucket{{le=\"0.005\",api=\"Produce\"}}")
            )
            .as_deref(),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            value(&text, &format!("{p}_bucket{{le=\"+Inf\",api=\"Produce\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, "arctern_fsync_duration_seconds_count ").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(
                &text,
                "arctern_amqp_method_duration_seconds_count{method=\"basic.publish\"}"
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, "arctern_bytes_received_total{protocol=\"kafka\"}").as_deref(),
            Some("100")
        );
        assert_eq!(
            value(&text, "rabbitmq_connection_outgoing_bytes_total ").as_deref(),
            Some("7")
        );
        assert_eq!(
            value(&text, "arctern_isr_shrinks_total ").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, "rabbitmq_process_resident_memory_bytes ").as_deref(),
            Some("4096")
        );
    }

    #[test]
    fn lag_is_log_end_minus_committed_never_negative() {
        assert_eq!(lag(10, 4), 6);
        assert_eq!(lag(10, 10), 0);
        assert_eq!(lag(3, 5), 0);
    }

    #[test]
    fn renders_the_documented_names_and_labels() {
        let s = Snapshot {
            queues: vec![QueueSample {
                vhost: "/".into(),
                queue: "q1".into(),
                ready: 3,
                unacked: 1,
                consumers: 2,
            }],
            amqp_connections: 4,
            amqp_channels: 5,
            amqp_totals: AmqpTotals {
                received: 7,
                ..AmqpTotals::default()
            },
            partitions: vec![PartitionSample {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                replicas: 3,
                in_sync: 2,
                current_offset: 10,
                oldest_offset: 2,
            }],
            group_offsets: vec![GroupOffsetSample {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                committed: 4,
                lag: Some(lag(10, 4)),
            }],
            kafka_requests: vec![("Produce".into(), 9)],
            alarm_disk: true,
            ..Snapshot::default()
        };
        let text = render(&s);
        let q = "{vhost=\"/\",queue=\"q1\"}";
        assert_eq!(
            value(&text, &format!("rabbitmq_queue_messages_ready{q}")).as_deref(),
            Some("3")
        );
        assert_eq!(
            value(&text, &format!("rabbitmq_queue_messages_unacked{q}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, &format!("rabbitmq_queue_consumers{q}")).as_deref(),
            Some("2")
        );
        assert_eq!(value(&text, "rabbitmq_connections ").as_deref(), Some("4"));
        assert_eq!(value(&text, "rabbitmq_channels ").as_deref(), Some("5"));
        assert_eq!(
            value(&text, "rabbitmq_global_messages_received_total ").as_deref(),
            Some("7")
        );
        assert_eq!(
            value(&text, "rabbitmq_alarms_free_disk_space_watermark ").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, "rabbitmq_alarms_memory_used_watermark ").as_deref(),
            Some("0")
        );
        let p = "{topic=\"t\",partition=\"0\"}";
        assert_eq!(
            value(&text, &format!("kafka_topic_partition_current_offset{p}")).as_deref(),
            Some("10")
        );
        assert_eq!(
            value(&text, &format!("kafka_topic_partition_oldest_offset{p}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, &format!("kafka_topic_partition_in_sync_replica{p}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(
                &text,
                &format!("kafka_topic_partition_under_replicated_partition{p}")
            )
            .as_deref(),
            Some("1")
        );
        let g = "{consumergroup=\"g\",topic=\"t\",partition=\"0\"}";
        assert_eq!(
            value(&text, &format!("kafka_consumergroup_current_offset{g}")).as_deref(),
            Some("4")
        );
        assert_eq!(
            value(&text, &format!("kafka_consumergroup_lag{g}")).as_deref(),
            Some("6")
        );
        assert_eq!(
            value(&text, "arctern_kafka_requests_total{api=\"Produce\"}").as_deref(),
            Some("9")
        );
    }
}
