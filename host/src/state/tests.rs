//! A node's log, lock and directory pass from one role's state to the other's.

use super::*;
use crate::state::lock::DirLock;

fn entry(seq: u64, epoch: u64, msg: &str) -> Entry {
    Entry { seq, epoch, key: None, msg: msg.to_owned() }
}

fn messages(log: &Log) -> Vec<String> {
    log.read(1, u32::MAX).into_iter().map(|e| e.msg).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_becomes_a_sequencer_and_back_over_one_log() {
    let dir = std::env::temp_dir().join(format!("replog-roles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ledger, _) =
        Ledger::open_dir(&dir, "test", 16, crate::state::Retention::default()).unwrap();
    let replica = Replica::new(Arc::new(ledger));
    let change = Change {
        version: 0,
        epoch: 1,
        truncate_after: None,
        begin: None,
        entries: vec![entry(1, 1, "a")],
    };
    replica.write(change).await.unwrap();
    replica.refuse(Some("an old master".into()));

    // Elected: the same log numbers writes, once an epoch above the ones it holds is open; the
    // replica it was takes nothing more (a change from the old master still on its way).
    let sequencer = replica.hand_over(None);
    let late = Change { version: replica.log().version(), ..Change::default() };
    assert!(matches!(replica.write(late).await, Err(LogError::Closed(_))));
    drop(replica);
    assert!(matches!(sequencer.mode(), Mode::Recovering(_)), "it recovers first");
    assert!(matches!(
        sequencer.append("too soon".into(), None, None).await,
        Err(LogError::Closed(_))
    ));
    assert!(matches!(sequencer.open(1).await, Err(LogError::Invalid(_))), "epoch 1 was recorded");
    sequencer.open(2).await.unwrap();
    sequencer.append("b".into(), None, None).await.unwrap();
    assert!(DirLock::acquire(&dir).is_err(), "the directory stays claimed across the change");

    // Deposed: the same log takes its new master's changes, with nothing of the old role left;
    // the sequencer it was is fenced by the new master's epoch.
    let replica = sequencer.hand_over(3);
    assert_eq!(sequencer.mode(), Mode::Fenced(3));
    assert!(matches!(sequencer.append("late".into(), None, None).await, Err(LogError::Closed(_))));
    drop(sequencer);
    assert_eq!(replica.refusal(), None, "a refusal belongs to the role it was made in");
    let standing = replica.standing();
    assert_eq!((standing.log.epoch, standing.log.last), (2, Position { seq: 2, epoch: 2 }));
    let change = Change {
        version: standing.log.version,
        epoch: 3,
        truncate_after: None,
        begin: None,
        entries: vec![entry(3, 3, "c")],
    };
    replica.write(change).await.unwrap();

    // Elected again, for term 4: recovery starts over, and it opens that epoch only.
    let sequencer = replica.hand_over(Some(4));
    drop(replica);
    assert!(matches!(sequencer.open(3).await, Err(LogError::Invalid(_))));
    assert!(matches!(sequencer.open(5).await, Err(LogError::Invalid(_))), "not its term");
    sequencer.open(4).await.unwrap();
    sequencer.hold_lease_until(std::time::Instant::now() + std::time::Duration::from_secs(60));
    sequencer.append("d".into(), None, None).await.unwrap();
    assert_eq!(messages(sequencer.log()), ["a", "b", "c", "d"]);
    let epochs: Vec<u64> = sequencer.log().read(1, u32::MAX).iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, [1, 2, 3, 4]);

    // All of it durable: the directory, read back once the node lets it go.
    drop(sequencer);
    let (ledger, _) =
        Ledger::open_dir(&dir, "test", 16, crate::state::Retention::default()).unwrap();
    assert_eq!(messages(&ledger.log), ["a", "b", "c", "d"]);
    assert_eq!(ledger.log.epoch(), 4);
    drop(ledger);
    std::fs::remove_dir_all(dir).unwrap();
}
