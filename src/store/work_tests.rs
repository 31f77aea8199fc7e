//! Shared work on every backend: claims are disjoint, expire and are taken
//! over; a result counts only from the claim's holder; one controller
//! closes the run.

use super::tests::{drain, each_backend, started};
use super::*;
use crate::bus::EventSink;
use crate::fleet::event::{NodeResult, NodeStatus};

fn nodes(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i:02}")).collect()
}

/// A recorded run with shared work over `nodes`, claims lasting `ttl_ms`.
fn shared_run(store: &mut dyn Store, id: &str, nodes: &[String], ttl_ms: i64) {
    let (sink, mut rx) = EventSink::channel(id);
    let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    store
        .create_work(&NewWork {
            run_id: id.into(),
            job: "{}".into(),
            sot_commit: Some("0123abc".into()),
            nodes: nodes.to_vec(),
            ttl_ms,
            created_by: "a".into(),
        })
        .unwrap();
    assert!(
        store.claim(id, "a", 5).unwrap().is_empty(),
        "nothing is claimable before the run is recorded"
    );
    sink.send(started(&names));
    drain(store, &mut rx);
}

fn names(claims: &[Claim]) -> Vec<String> {
    claims.iter().map(|c| c.node.clone()).collect()
}

#[test]
fn claims_are_disjoint_in_order_and_a_result_counts_once() {
    each_backend(|db| {
        let mut store = db.open();
        shared_run(&mut *store, "run-w", &nodes(6), 60_000);
        let a = store.claim("run-w", "a", 4).unwrap();
        let b = store.claim("run-w", "b", 4).unwrap();
        assert_eq!(names(&a), ["n01", "n02", "n03", "n04"]);
        assert_eq!(names(&b), ["n05", "n06"], "what a left, in target order");
        assert!(store.claim("run-w", "c", 4).unwrap().is_empty());
        assert_eq!(
            store.progress("run-w").unwrap(),
            Progress {
                free: 0,
                claimed: 6,
                done: 0
            }
        );
        let ok = |n: &str| NodeResult::new(n, NodeStatus::Ok);
        assert_eq!(
            store
                .complete("run-w", "a", &[ok("n01"), ok("n05")])
                .unwrap(),
            [true, false],
            "a may not complete b's node"
        );
        let run = store.run("run-w").unwrap().unwrap();
        let recorded: Vec<String> = store
            .results(&run)
            .unwrap()
            .into_iter()
            .map(|r| r.node)
            .collect();
        assert_eq!(recorded, ["n01"], "only the holder's result is recorded");
        assert_eq!(store.complete("run-w", "a", &[ok("n01")]).unwrap(), [false]);
        store.release("run-w", "a", &["n04".into()]).unwrap();
        assert_eq!(names(&store.claim("run-w", "b", 9).unwrap()), ["n04"]);
        assert!(
            !store.close("run-w", "a").unwrap(),
            "not every node is done"
        );
        store
            .complete("run-w", "a", &[ok("n02"), ok("n03")])
            .unwrap();
        store
            .complete("run-w", "b", &[ok("n04"), ok("n05"), ok("n06")])
            .unwrap();
        assert!(store.progress("run-w").unwrap().finished());
        assert!(store.close("run-w", "b").unwrap());
        assert!(!store.close("run-w", "a").unwrap(), "closed once");
        assert_eq!(
            store.work("run-w").unwrap().unwrap().closed_by.as_deref(),
            Some("b")
        );
        let done_by: Vec<(String, Option<String>)> = store
            .items("run-w")
            .unwrap()
            .into_iter()
            .map(|i| (i.node, i.done_by))
            .collect();
        assert_eq!(done_by[0], ("n01".into(), Some("a".into())));
        assert_eq!(done_by[3], ("n04".into(), Some("b".into())));
    });
}

#[test]
fn an_expired_claim_is_taken_over_and_its_holder_no_longer_counts() {
    each_backend(|db| {
        let mut store = db.open();
        shared_run(&mut *store, "run-x", &nodes(3), 300);
        assert_eq!(store.claim("run-x", "a", 2).unwrap().len(), 2);
        assert_eq!(store.renew("run-x", "a").unwrap(), 2);
        assert_eq!(names(&store.claim("run-x", "b", 9).unwrap()), ["n03"]);
        std::thread::sleep(std::time::Duration::from_millis(400));
        // b renews, a (dead) does not.
        assert_eq!(store.renew("run-x", "b").unwrap(), 1);
        let taken = store.claim("run-x", "b", 9).unwrap();
        assert_eq!(names(&taken), ["n01", "n02"]);
        assert!(
            taken
                .iter()
                .all(|c| c.taken_from.as_deref() == Some("a") && c.attempts == 2),
            "{taken:?}"
        );
        let ok = |n: &str| NodeResult::new(n, NodeStatus::Ok);
        assert_eq!(
            store.complete("run-x", "a", &[ok("n01")]).unwrap(),
            [false],
            "a's late result is not recorded"
        );
        assert_eq!(store.renew("run-x", "a").unwrap(), 0);
    });
}

#[test]
fn controllers_claiming_at_once_never_share_a_node() {
    each_backend(|db| {
        let mut store = db.open();
        let all = nodes(400);
        shared_run(&mut *store, "run-y", &all, 60_000);
        let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|c| {
                    s.spawn(move || {
                        let mut store = db.open();
                        let me = format!("c{c}");
                        let mut mine = Vec::new();
                        loop {
                            let batch = store.claim("run-y", &me, 7).unwrap();
                            if batch.is_empty() {
                                break;
                            }
                            let results: Vec<NodeResult> = batch
                                .iter()
                                .map(|c| NodeResult::new(&c.node, NodeStatus::Ok))
                                .collect();
                            assert!(
                                store
                                    .complete("run-y", &me, &results)
                                    .unwrap()
                                    .iter()
                                    .all(|k| *k)
                            );
                            mine.extend(names(&batch));
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut every: Vec<String> = claimed.iter().flatten().cloned().collect();
        every.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(
            every, expected,
            "each node claimed by exactly one controller"
        );
        assert!(
            claimed.iter().filter(|c| !c.is_empty()).count() >= 2,
            "the work was split: {:?}",
            claimed.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(store.progress("run-y").unwrap().done, 400);
    });
}
