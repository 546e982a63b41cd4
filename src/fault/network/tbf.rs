//! A tbf rate limit as the root qdisc of an interface (`bandwidth`).

use super::spec::BandwidthSpec;
use super::tc::{
    check_tc_interface, classify_root, compare_qdiscs, lock_interface, probe_features, qstr,
    root_ops, tc_time, Feature, RootState, OWNED_ROOT,
};
use super::{execute, note_op, s, Op, SshPeer};
use crate::fault::{FaultContext, FaultError, FaultImpl, PlannedOp, UndoLog};
use crate::sys::net;
use crate::units::Duration;

/// A tbf rate limit as the root qdisc of an interface (`bandwidth`).
pub struct BandwidthFault {
    spec: BandwidthSpec,
    ssh: Option<SshPeer>,
    state: Option<(RootState, Vec<serde_json::Value>)>,
}

impl BandwidthFault {
    pub fn new(spec: &BandwidthSpec) -> BandwidthFault {
        BandwidthFault {
            spec: spec.clone(),
            ssh: SshPeer::from_env(),
            state: None,
        }
    }

    fn ns(&self) -> Option<&str> {
        self.spec.netns.as_deref()
    }

    fn tbf_args(&self) -> Vec<String> {
        let burst = self.spec.burst.map(|b| b.bytes()).unwrap_or(32 * 1024);
        let latency = self.spec.latency.unwrap_or(Duration::from_millis(50));
        vec![
            s("tbf"),
            s("rate"),
            format!("{}bit", self.spec.rate.bits_per_sec),
            s("burst"),
            format!("{burst}b"),
            s("latency"),
            tc_time(latency),
        ]
    }

    /// `tc qdisc change` of our tbf to `next`'s rate, when only the rate
    /// (or burst, latency) differs.
    fn change_op(&self, next: &crate::experiment::model::Fault) -> Option<Op> {
        let crate::experiment::model::Fault::Bandwidth(n) = next else {
            return None;
        };
        if n.interface != self.spec.interface || n.netns != self.spec.netns {
            return None;
        }
        let words = BandwidthFault::new(n).tbf_args();
        let mut a: Vec<String> = [
            "qdisc",
            "change",
            "dev",
            &self.spec.interface,
            "root",
            "handle",
            OWNED_ROOT,
        ]
        .map(s)
        .to_vec();
        a.extend(words);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        Some(
            Op::new(
                format!(
                    "change the tbf rate limit on {} in place to {}",
                    self.spec.interface, n.rate
                ),
                net::tc(self.ns(), &refs),
            )
            .note("the undo recorded at injection restores the state from before the first level"),
        )
    }

    fn root_now(&self) -> RootState {
        match &self.state {
            Some((r, _)) => r.clone(),
            None => classify_root(
                self.ns(),
                &self.spec.interface,
                self.spec.replace_existing_qdisc,
            )
            .unwrap_or(RootState::Default {
                kind: "?".into(),
                restore: Vec::new(),
            }),
        }
    }

    fn ops(&self) -> Vec<Op> {
        vec![root_ops(
            self.ns(),
            &self.spec.interface,
            &self.root_now(),
            &self.tbf_args(),
            &format!("a {} tbf rate limit", self.spec.rate),
        )]
    }
}

impl FaultImpl for BandwidthFault {
    fn kind(&self) -> &'static str {
        "bandwidth"
    }

    fn target(&self) -> String {
        match self.ns() {
            Some(ns) => format!("{} in netns {ns}", self.spec.interface),
            None => self.spec.interface.clone(),
        }
    }

    fn preflight(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        let ns = self.ns().map(str::to_string);
        let ns = ns.as_deref();
        check_tc_interface(ns, &self.spec.interface)?;
        lock_interface(ns, &self.spec.interface, ctx)?;
        probe_features(&[Feature::Tbf], ctx.dry_run)?;
        let before = net::qdiscs(ns, &self.spec.interface).map_err(FaultError::precondition)?;
        let root = classify_root(ns, &self.spec.interface, self.spec.replace_existing_qdisc)?;
        self.state = Some((root, before));
        Ok(())
    }

    fn plan(&self, _ctx: &FaultContext) -> Vec<PlannedOp> {
        let mut out = Vec::new();
        if let Some(p) = &self.ssh {
            if net::route_dev(self.ns(), &p.client.to_string())
                .is_some_and(|d| d == self.spec.interface)
            {
                out.push(note_op(format!(
                    "note: your SSH session {} goes through {}; it stays connected but shares the limited rate",
                    p.describe(),
                    self.spec.interface
                )));
            }
        }
        out.extend(self.ops().iter().map(Op::planned));
        out
    }

    fn inject(&mut self, ctx: &FaultContext, undo: &mut dyn UndoLog) -> Result<(), FaultError> {
        if self.state.is_none() {
            self.preflight(ctx)?;
        }
        execute(&self.ops(), &self.target(), undo)
    }

    fn change_to(
        &mut self,
        _ctx: &FaultContext,
        next: &crate::experiment::model::Fault,
    ) -> Result<bool, FaultError> {
        let Some(op) = self.change_op(next) else {
            return Ok(false);
        };
        net::run_ok(&op.argv).map_err(|e| FaultError::failed(format!("{}: {e}", op.action)))?;
        if let crate::experiment::model::Fault::Bandwidth(n) = next {
            self.spec = n.clone();
        }
        Ok(true)
    }

    fn plan_change(
        &self,
        _ctx: &FaultContext,
        next: &crate::experiment::model::Fault,
    ) -> Option<Vec<PlannedOp>> {
        self.change_op(next).map(|op| vec![op.planned()])
    }

    fn verify(&mut self, _ctx: &FaultContext) -> Result<String, FaultError> {
        let qs =
            net::qdiscs_with_stats(self.ns(), &self.spec.interface).map_err(FaultError::failed)?;
        let Some(q) = qs
            .iter()
            .find(|q| qstr(q, "kind") == "tbf" && qstr(q, "handle") == OWNED_ROOT)
        else {
            return Err(FaultError::failed(format!(
                "no tbf qdisc with handle {OWNED_ROOT} on {} after injection",
                self.spec.interface
            )));
        };
        let rate = q
            .get("options")
            .and_then(|o| o.get("rate"))
            .and_then(|r| r.as_u64())
            .unwrap_or(0);
        let want = self.spec.rate.bits_per_sec / 8;
        if rate == 0 || rate.abs_diff(want) > want / 100 + 1 {
            return Err(FaultError::failed(format!(
                "the tbf qdisc on {} has rate {rate} bytes/s, not {want} bytes/s",
                self.spec.interface
            )));
        }
        Ok(format!(
            "tbf {OWNED_ROOT} on {}: rate {} ({rate} bytes/s)",
            self.spec.interface, self.spec.rate
        ))
    }

    /// The qdisc or nft table and its values are still there (read-only).
    fn health(&mut self, ctx: &FaultContext) -> Option<crate::fault::FaultHealth> {
        Some(super::health_of(self.verify(ctx)))
    }

    fn verify_rollback(&mut self, _ctx: &FaultContext) -> Result<(), FaultError> {
        let Some((root, before)) = self.state.clone() else {
            return Ok(());
        };
        let now = net::qdiscs(self.ns(), &self.spec.interface).map_err(FaultError::failed)?;
        compare_qdiscs(&self.spec.interface, &before, &now, &root)
    }

    fn observations(&self) -> serde_json::Value {
        let mut o = serde_json::json!({
            "interface": self.spec.interface,
            "netns": self.spec.netns,
            "rate_bits_per_sec": self.spec.rate.bits_per_sec,
        });
        if let Some((RootState::User { saved, .. }, _)) = &self.state {
            o["replaced_qdisc"] = serde_json::from_str(saved).unwrap_or_default();
        }
        o
    }
}
