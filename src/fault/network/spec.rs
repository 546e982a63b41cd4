//! What the network faults' entries in an experiment file say.

use crate::units::{Duration, Percent, Rate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which traffic a network fault applies to. Everything else flows normally.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficFilter {
    /// Destination addresses or CIDRs (`10.0.0.2`, `10.0.0.0/24`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<String>,
    /// Source addresses or CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Source ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ports: Vec<u16>,
    /// `tcp`, `udp`, `icmp` or `all` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Egress,
    Ingress,
    Both,
}

/// tc/netem impairment of an interface.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Interface name, e.g. `eth0` or `veth-app`.
    pub interface: String,
    /// Network namespace (as in `ip netns list`) the interface lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Run the fault in this container's network namespace instead (a
    /// name or id; interfaces as the container sees them, e.g. `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Run the fault in the network namespace of every running container
    /// carrying all these labels, e.g. `{app: cache-service}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Run the fault in the network namespace of every running container of
    /// this Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,
    /// `egress` (default) or `ingress` (through an IFB device the fault creates).
    #[serde(default)]
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<Chance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Chance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<Reorder>,
    /// Limit the rate of the impaired traffic (netem rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Only this traffic is impaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TrafficFilter>,
    /// Replace a root qdisc that is not a kernel default (your own shaping),
    /// saving it and restoring it exactly on rollback. Default: refuse.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_existing_qdisc: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    pub time: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
    /// `uniform` (default), `normal`, `pareto` or `paretonormal`; needs `jitter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
}

/// Random loss (`percent`, `correlation`) or the Gilbert-Elliott model.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gilbert_elliott: Option<GilbertElliott>,
}

/// netem `loss gemodel p r 1-h 1-k`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliott {
    /// Chance to move from the good to the bad state.
    pub p: Percent,
    /// Chance to move from the bad to the good state.
    pub r: Percent,
    /// Loss in the bad state (default 100%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_loss: Option<Percent>,
    /// Loss in the good state (default 0%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_loss: Option<Percent>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Chance {
    pub percent: Percent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    pub percent: Percent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DropAction {
    /// Silently drop: peers see timeouts.
    #[default]
    Drop,
    /// Reject: peers see connection refused / ICMP unreachable at once.
    Reject,
}

/// nftables drop or reject, in a table owned by the run.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSpec {
    /// Network namespace (as in `ip netns list`) to run the fault in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Run the fault in this container's network namespace instead (a
    /// name or id; interfaces as the container sees them, e.g. `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Run the fault in the network namespace of every running container
    /// carrying all these labels, e.g. `{app: cache-service}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Run the fault in the network namespace of every running container of
    /// this Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,
    #[serde(default)]
    pub action: DropAction,
    /// `egress` (default for blackhole), `ingress` or `both` (default for partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Peers (addresses or CIDRs) on the other side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Ports (remote for egress, local for ingress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// Make DNS resolution fail.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// Network namespace (as in `ip netns list`) to run the fault in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Run the fault in this container's network namespace instead (a
    /// name or id; interfaces as the container sees them, e.g. `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Run the fault in the network namespace of every running container
    /// carrying all these labels, e.g. `{app: cache-service}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Run the fault in the network namespace of every running container of
    /// this Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,
    #[serde(default)]
    pub action: DropAction,
    /// Resolver addresses; default all (any destination on port 53).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<String>,
}

/// Random loss through nftables `numgen random`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PacketLossSpec {
    /// Network namespace (as in `ip netns list`) to run the fault in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Run the fault in this container's network namespace instead (a
    /// name or id; interfaces as the container sees them, e.g. `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Run the fault in the network namespace of every running container
    /// carrying all these labels, e.g. `{app: cache-service}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Run the fault in the network namespace of every running container of
    /// this Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,
    pub percent: Percent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TrafficFilter>,
}

/// A tbf rate limit on an interface.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSpec {
    pub interface: String,
    /// Network namespace (as in `ip netns list`) to run the fault in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Run the fault in this container's network namespace instead (a
    /// name or id; interfaces as the container sees them, e.g. `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Run the fault in the network namespace of every running container
    /// carrying all these labels, e.g. `{app: cache-service}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Run the fault in the network namespace of every running container of
    /// this Compose service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<crate::fault::container::ComposeService>,
    pub rate: Rate,
    /// Bucket size (default 32KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<crate::units::Size>,
    /// Longest a packet may wait in the queue (default 50ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_existing_qdisc: bool,
}
