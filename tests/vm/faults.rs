//! Injecting a fault through the library the way the runner does, with the
//! undo records kept in memory and replayed in reverse (shared by the
//! network tests on the host and inside the test VM).

#![allow(dead_code)]

use faultline::fault::{FaultContext, FaultImpl, UndoLog};
use faultline::journal::undo::UndoOp;

/// Undo records kept in memory, replayed like the runner does.
#[derive(Default)]
pub struct MemUndo(Vec<UndoOp>);

impl UndoLog for MemUndo {
    fn record(&mut self, _target: &str, op: UndoOp) -> anyhow::Result<()> {
        self.0.push(op);
        Ok(())
    }
}

impl MemUndo {
    pub fn rollback(&mut self) {
        for op in self.0.drain(..).rev() {
            op.apply()
                .unwrap_or_else(|e| panic!("undo {} failed: {e}", op.manual_command()));
        }
    }
}

/// Rolls back on drop, so a failed assert still cleans up (the namespaces
/// go away anyway, but the rollback path is exercised either way).
pub struct Injected<'a> {
    pub fault: Box<dyn FaultImpl>,
    pub undo: MemUndo,
    ctx: &'a FaultContext,
}

impl<'a> Injected<'a> {
    pub fn new(mut fault: Box<dyn FaultImpl>, ctx: &'a FaultContext) -> Injected<'a> {
        fault
            .preflight(ctx)
            .unwrap_or_else(|e| panic!("preflight: {e} (exit {})", e.code));
        let mut undo = MemUndo::default();
        let r = fault.inject(ctx, &mut undo);
        let mut inj = Injected { fault, undo, ctx };
        if let Err(e) = r {
            inj.undo.rollback();
            panic!("inject: {e}");
        }
        let evidence = inj
            .fault
            .verify(ctx)
            .unwrap_or_else(|e| panic!("verify: {e}"));
        assert!(!evidence.is_empty());
        inj
    }

    pub fn rollback(mut self) {
        self.undo.rollback();
        self.fault
            .verify_rollback(self.ctx)
            .unwrap_or_else(|e| panic!("verify_rollback: {e}"));
    }
}

impl Drop for Injected<'_> {
    fn drop(&mut self) {
        for op in self.undo.0.drain(..).rev() {
            let _ = op.apply();
        }
    }
}
