//! Properties of the memory store: whatever the interleaving of reservations and
//! settlements, a budget never holds more than its limit, a refusal takes nothing, and once
//! everything is settled nothing stays reserved.

use std::sync::Arc;
use std::time::Duration;

use portcullis_budget::store::{
    Charge, LimitStore, MemoryStore, Reservation, Reserve, Rule, ScopeKey, Verdict, Window,
};
use proptest::prelude::*;

fn charge(scope: u8, limit: u64, amount: u64) -> Charge {
    Charge {
        key: ScopeKey::new("p", 0, format!("s{scope}")),
        rule: Rule::Budget {
            limit: Some(limit),
            alert: None,
            window: Window::Never,
        },
        amount,
    }
}

proptest! {
    #[test]
    fn budgets_hold_under_any_interleaving(
        ops in proptest::collection::vec((0u8..3, 0u8..3, 1u64..40, 0u64..60, any::<bool>()), 1..200)
    ) {
        const LIMIT: u64 = 100;
        let store = MemoryStore::new();
        let mut open: Vec<(Arc<Reservation>, u64, u64)> = Vec::new();
        let mut used = [0u64; 3];
        for (a, b, amount, actual, settle_first) in ops {
            if settle_first && !open.is_empty() {
                let (r, spent_a, spent_b) = open.remove(0);
                store.settle(&r, &[spent_a, spent_b]);
                used[usize::from(r.charges[0].key.scope.as_bytes()[1] - b'0')] += spent_a;
                used[usize::from(r.charges[1].key.scope.as_bytes()[1] - b'0')] += spent_b;
            }
            if a == b {
                continue;
            }
            let r = Arc::new(Reservation::new(1, Duration::from_secs(60), vec![
                charge(a, LIMIT, amount),
                charge(b, LIMIT, amount),
            ]));
            let Reserve::Ready(Ok(verdict)) = store.reserve(&r) else { panic!("memory answers at once") };
            match verdict {
                Verdict::Admitted(standings) => {
                    for s in &standings {
                        prop_assert!(s.used + s.reserved <= LIMIT + 60 * 200);
                        prop_assert!(s.reserved <= LIMIT);
                    }
                    // Settle at most what was reserved: then spend never passes the limit.
                    let spent = actual.min(amount);
                    open.push((r, spent, spent));
                }
                Verdict::Refused { standing, .. } => {
                    prop_assert!(standing.used + standing.reserved + amount > LIMIT);
                }
            }
        }
        for (r, spent_a, spent_b) in open.drain(..) {
            store.settle(&r, &[spent_a, spent_b]);
            used[usize::from(r.charges[0].key.scope.as_bytes()[1] - b'0')] += spent_a;
            used[usize::from(r.charges[1].key.scope.as_bytes()[1] - b'0')] += spent_b;
        }
        let entries = futures_lite(store.entries());
        for entry in entries {
            let portcullis_budget::store::EntryState::Budget { used: u, reserved, .. } = entry.state else {
                panic!("a budget");
            };
            prop_assert_eq!(reserved, 0);
            prop_assert!(u <= LIMIT);
            let scope = usize::from(entry.key.scope.as_bytes()[1] - b'0');
            prop_assert_eq!(u, used[scope]);
        }
    }
}

/// The memory store's snapshot future is ready at once.
fn futures_lite<T>(
    future: portcullis_budget::store::BoxFuture<
        '_,
        Result<T, portcullis_budget::store::StoreError>,
    >,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(future).unwrap()
}
