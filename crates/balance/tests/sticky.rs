//! Sticky keys: stable while the target is available, moved while it is not, back when it
//! returns; spread by weight; the same for every extractor and every target order.

mod support;

use std::collections::HashMap;

use http::HeaderName;
use portcullis_balance::{Balance, Sticky, Strategy, Target};
use tower::Service;

use support::{CHI2_P001_DF1, Mode, Switch, chi_square, now, request, request_from, target_of};

fn sticky(targets: &[(&'static str, f64, &Switch)], strategy: Sticky) -> Balance<Switch> {
    Balance::builder()
        .targets(
            targets
                .iter()
                .map(|(name, w, s)| Target::new(*name, (*s).clone()).weight(*w)),
        )
        .strategy(Strategy::Sticky(strategy))
        .seed(1)
        .build()
        .unwrap()
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// Where each user's request goes now.
fn placement(lb: &mut Balance<Switch>, users: &[String]) -> Vec<usize> {
    users
        .iter()
        .map(|u| target_of(&now(lb.call(request_from(u))).unwrap()))
        .collect()
}

#[test]
fn a_key_stays_on_its_target_and_keys_spread_by_weight() {
    let (a, b) = (Switch::new("a"), Switch::new("b"));
    let mut lb = sticky(&[("a", 0.7, &a), ("b", 0.3, &b)], Sticky::metadata("_user"));
    let users = users(4_000);
    let first = placement(&mut lb, &users);
    for _ in 0..3 {
        assert_eq!(placement(&mut lb, &users), first);
    }
    let mut counts = [0usize; 2];
    for &t in &first {
        counts[t] += 1;
    }
    let chi2 = chi_square(&counts, &[0.7, 0.3]);
    assert!(chi2 < CHI2_P001_DF1, "{counts:?}: chi2 {chi2}");
}

#[test]
fn a_key_moves_while_its_target_is_unavailable_and_comes_back() {
    for outage in [Mode::Unavailable(None), Mode::NotReady] {
        let (a, b, c) = (Switch::new("a"), Switch::new("b"), Switch::new("c"));
        let mut lb = sticky(
            &[("a", 1.0, &a), ("b", 1.0, &b), ("c", 1.0, &c)],
            Sticky::metadata("_user"),
        );
        let users = users(600);
        let before = placement(&mut lb, &users);
        assert!(before.contains(&1));

        b.set(outage.clone());
        let during = placement(&mut lb, &users);
        for (i, (&was, &is)) in before.iter().zip(&during).enumerate() {
            if was == 1 {
                assert_ne!(is, 1, "{} moved off b ({outage:?})", users[i]);
            } else {
                // Rendezvous hashing: keys of other targets do not move.
                assert_eq!(is, was, "{} stayed ({outage:?})", users[i]);
            }
        }
        // The moved keys spread over the rest, not all onto one.
        let moved: Vec<_> = during
            .iter()
            .zip(&before)
            .filter(|&(_, &was)| was == 1)
            .map(|(&is, _)| is)
            .collect();
        assert!(moved.contains(&0) && moved.contains(&2), "{moved:?}");
        // And they stay put while the outage lasts.
        assert_eq!(placement(&mut lb, &users), during);

        b.set(Mode::Up);
        assert_eq!(placement(&mut lb, &users), before, "{outage:?}");
    }
}

#[test]
fn a_weight_of_zero_takes_no_keys() {
    let (a, b) = (Switch::new("a"), Switch::new("b"));
    let mut lb = sticky(&[("a", 0.0, &a), ("b", 1.0, &b)], Sticky::metadata("_user"));
    assert!(placement(&mut lb, &users(500)).iter().all(|&t| t == 1));
    assert_eq!(a.calls(), 0);
}

#[test]
fn requests_without_a_key_get_a_weighted_choice() {
    let (a, b) = (Switch::new("a"), Switch::new("b"));
    let mut lb = sticky(&[("a", 0.7, &a), ("b", 0.3, &b)], Sticky::metadata("_user"));
    let mut counts = [0usize; 2];
    for _ in 0..5_000 {
        counts[target_of(&now(lb.call(request())).unwrap())] += 1;
    }
    let chi2 = chi_square(&counts, &[0.7, 0.3]);
    assert!(chi2 < CHI2_P001_DF1, "{counts:?}: chi2 {chi2}");
}

#[test]
fn a_key_follows_the_target_name_not_its_position() {
    let names = ["openai", "azure", "groq", "together"];
    let by_name = |order: &[usize]| {
        let switches: Vec<_> = names.iter().map(|n| Switch::new(n)).collect();
        let mut lb = Balance::builder()
            .targets(
                order
                    .iter()
                    .map(|&i| Target::new(names[i], switches[i].clone())),
            )
            .strategy(Strategy::Sticky(Sticky::metadata("_user")))
            .build()
            .unwrap();
        users(300)
            .iter()
            .map(|u| {
                let t = target_of(&now(lb.call(request_from(u))).unwrap());
                (u.clone(), lb.name(t).to_owned())
            })
            .collect::<HashMap<_, _>>()
    };
    assert_eq!(by_name(&[0, 1, 2, 3]), by_name(&[3, 1, 0, 2]));
}

#[test]
fn header_metadata_and_custom_keys_agree_on_the_same_value() {
    let (a, b, c) = (Switch::new("a"), Switch::new("b"), Switch::new("c"));
    let targets = [("a", 1.0, &a), ("b", 2.0, &b), ("c", 1.0, &c)];
    let mut by_meta = sticky(&targets, Sticky::metadata("_user"));
    let mut by_header = sticky(
        &targets,
        Sticky::header(HeaderName::from_static("x-session-id")),
    );
    let mut by_fn = sticky(
        &targets,
        Sticky::from_fn(|req: &http::Request<_>| {
            req.uri()
                .query()?
                .strip_prefix("session=")
                .map(str::to_owned)
        }),
    );
    for user in users(200) {
        let meta = target_of(&now(by_meta.call(request_from(&user))).unwrap());
        let mut req = request();
        req.headers_mut()
            .insert("x-session-id", user.parse().unwrap());
        let header = target_of(&now(by_header.call(req)).unwrap());
        let mut req = request();
        *req.uri_mut() = format!("/v1/chat/completions?session={user}")
            .parse()
            .unwrap();
        let custom = target_of(&now(by_fn.call(req)).unwrap());
        assert_eq!((meta, header, custom), (meta, meta, meta), "{user}");
    }
}
