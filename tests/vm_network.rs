//! Network faults against a stock distribution kernel (which has sch_netem),
//! booted in QEMU. See tests/vm/mod.rs.

#[path = "vm/mod.rs"]
mod vm;

use std::time::Duration;

#[test]
fn vm_harness_boots_and_netem_loads() {
    let Some(mut vm) = vm::Vm::new() else { return };
    vm.add_modules(&["sch_netem"]);
    let log = vm.run(
        "vmcheck netem_on_lo /sbin/tc qdisc add dev lo root netem delay 1ms\n\
         echo \"VMTEST kernel PASS $(uname -r)\"\n",
        Duration::from_secs(180),
    );
    eprintln!("{}", log.tail());
    log.assert_pass("netem_on_lo");
    log.assert_all_pass();
}

#[test]
fn vm_log_flags_missing_and_failed_markers() {
    let log = vm::VmLog::parse(
        "noise\nVMTEST a PASS 12 ms\nVMTEST b FAIL exit 2\nVMHARNESS script finished\n".into(),
        false,
        Duration::from_secs(1),
    );
    assert_eq!(log.assert_pass("a"), "12 ms");
    assert!(std::panic::catch_unwind(|| log.assert_pass("b")).is_err());
    assert!(std::panic::catch_unwind(|| log.assert_pass("c")).is_err());
    assert!(std::panic::catch_unwind(|| log.assert_all_pass()).is_err());
    let unfinished = vm::VmLog::parse("VMTEST a PASS\n".into(), true, Duration::from_secs(9));
    assert!(std::panic::catch_unwind(|| unfinished.assert_all_pass()).is_err());
}
