//! The simulation itself under test: seeds replay exactly, every check can fail, CI's seed
//! range holds every invariant, and each bug a seed found stays fixed (one named test per bug,
//! replaying the seed that found it).
//!
//! A regression test replays its seed through today's simulation. If the simulation's choices
//! change (a new operation or fault), a seed may stop reaching its bug: find a new one by
//! reverting the fix and running `cargo xtask sim --seeds 1000`, and update the test.

use filesync_sim::{Config, Sabotage, run_seed, run_with};

fn passes(seed: u64) {
    if let Err(failure) = run_seed(seed) {
        let tail: Vec<&String> = failure.trace.iter().rev().take(40).rev().collect();
        panic!(
            "{failure}\nlast steps:\n{}",
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The seeds CI runs (at least 200): every invariant holds for each.
#[test]
fn seeds_0_to_255_hold_every_invariant() {
    let mut faults = 0;
    for seed in 0..256 {
        match run_seed(seed) {
            Ok(report) => faults += report.faults,
            Err(failure) => panic!("{failure}"),
        }
    }
    // The runs inject faults at all (a world without faults would pass trivially).
    assert!(faults > 256 * 10, "only {faults} faults in 256 seeds");
}

/// A seed replays exactly: the same steps, the same outcome, the same trace.
#[test]
fn a_seed_replays_exactly() {
    let a = run_seed(11).expect("seed 11 passes");
    let b = run_seed(11).expect("seed 11 passes again");
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.trace_digest, b.trace_digest);
    let other = run_seed(12).expect("seed 12 passes");
    assert_ne!(a.trace_digest, other.trace_digest, "two seeds, one run");
}

fn sabotaged(seed: u64, sabotage: Sabotage) -> String {
    let config = Config {
        sabotage: Some(sabotage),
        ..Config::for_seed(seed)
    };
    match run_with(seed, config) {
        Ok(_) => panic!("the checks missed {sabotage:?}"),
        Err(failure) => {
            assert!(
                failure.replay_command().contains(&format!("--seed {seed}")),
                "a failure names the command that replays it"
            );
            failure.message
        }
    }
}

/// Each check fails when what it checks is broken on purpose.
#[test]
fn a_corrupt_remote_object_is_caught() {
    let message = sabotaged(7, Sabotage::CorruptRemoteObject);
    assert!(message.contains("corrupt"), "{message}");
}

#[test]
fn missing_local_bytes_are_caught() {
    let message = sabotaged(7, Sabotage::DropLocalContent);
    assert!(message.contains("missing"), "{message}");
}

#[test]
fn a_lost_acknowledged_save_is_caught() {
    let message = sabotaged(7, Sabotage::PhantomAcknowledgement);
    assert!(message.contains("not in the relay's log"), "{message}");
}

#[test]
fn an_orphan_remote_object_is_caught() {
    let message = sabotaged(7, Sabotage::OrphanRemoteObject);
    assert!(message.contains("no live file uses it"), "{message}");
}

/// Seed 0: a device that applied another device's update kept the replaced bytes forever
/// (only the updating device released them). Fixed in the `FileUpdated` handler: the row's
/// old `local_hash` is released (and its object owed) when the content changes.
#[test]
fn regression_seed_0_remote_update_releases_replaced_local_content() {
    passes(0);
}

/// Seeds 1 and 5: a process killed between writing content (or its sidecar) and committing
/// the event left it behind for good: nothing ever collected garbage. Fixed: the leader
/// collects unused content older than `Options::orphan_grace` when it starts, and
/// `FileSync::collect_garbage` does it on demand.
#[test]
fn regression_seeds_1_and_5_crash_leftovers_are_collected() {
    passes(1);
    passes(5);
}

/// Seed 2: two devices updated one file at once; the update ordered first was uploaded, and
/// no device removed its object once the other update replaced it. Fixed with seed 0's fix:
/// the device holding the replaced content owes its object's deletion.
#[test]
fn regression_seed_2_concurrent_updates_leave_no_orphan_object() {
    passes(2);
}

/// Seed 3: a device deleted a file and, seeing no other file with that content, deleted the
/// object, while another device had just saved the same content (uploaded, not yet pushed):
/// that file's object was gone for good and the third device could never download it. Fixed:
/// deletes wait until the relay's whole log is in view and our own events are pushed, and a
/// device re-checks (and re-uploads) an object once the relay confirms its upload event.
#[test]
fn regression_seed_3_shared_content_deleted_elsewhere_is_restored() {
    passes(3);
}

/// Seed 27: a file was updated, uploaded, then deleted by another device that ordered its own
/// update in between: the devices handled the delete with the record's last hash only, and the
/// uploaded content of the update was never released. Fixed: a delete also releases the
/// content the device's row still names.
#[test]
fn regression_seed_27_delete_releases_the_content_the_row_names() {
    passes(27);
}

/// Seed 1561: an owed delete ran while the device's own event that made the object unused was
/// not yet in the relay, so a device saving the same content could not know to re-check it.
/// Fixed: debts are paid only when nothing of ours is pending.
#[test]
fn regression_seed_1561_deletes_wait_for_our_own_events() {
    passes(1561);
}
