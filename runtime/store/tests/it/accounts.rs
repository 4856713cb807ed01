use crate::common::*;
use chrono::Duration;

#[tokio::test]
async fn passwords_codes_sessions_and_failures_round_trip() {
    for db in databases() {
        let store = db.store().await;
        seed(&store).await;
        let now = t0();
        assert!(
            store.set_password("clerk_a", "short").await.is_err(),
            "{}: too short",
            db.label
        );
        store.set_password("clerk_a", "a long enough secret").await.unwrap();
        assert!(
            store
                .check_password(Some("clerk_a"), "a long enough secret")
                .await
                .unwrap()
        );
        assert!(
            !store
                .check_password(Some("clerk_a"), "a long enough secreT")
                .await
                .unwrap()
        );
        assert!(
            !store.check_password(Some("clerk_b"), "").await.unwrap(),
            "no password set: never matches"
        );
        // An unknown name costs the same argon2 work as a real account (before, it answered
        // at once, which told a stranger which names exist). Medians of five, far apart if
        // the work were skipped: argon2 is tens of milliseconds, the lookup a fraction of one.
        let median = |mut v: Vec<std::time::Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            assert!(!store.check_password(Some("clerk_a"), "wrong guess").await.unwrap());
            known.push(t.elapsed());
            let t = std::time::Instant::now();
            assert!(!store.check_password(None, "wrong guess").await.unwrap());
            unknown.push(t.elapsed());
        }
        let (known, unknown) = (median(known), median(unknown));
        assert!(
            unknown * 3 > known,
            "{}: unknown {unknown:?}, known {known:?}",
            db.label
        );
        assert_eq!(store.find_login("clerk_a").await.unwrap().as_deref(), Some("clerk_a"));
        assert_eq!(store.find_login("nobody").await.unwrap(), None);

        let code = store
            .issue_sign_in_code("clerk_a", now, Duration::minutes(10))
            .await
            .unwrap();
        assert_eq!(code.len(), 6);
        assert!(
            !store
                .redeem_sign_in_code("clerk_a", &code, now + Duration::minutes(11))
                .await
                .unwrap(),
            "expired"
        );
        let code = store
            .issue_sign_in_code("clerk_a", now, Duration::minutes(10))
            .await
            .unwrap();
        assert!(
            !store.redeem_sign_in_code("clerk_b", &code, now).await.unwrap(),
            "someone else's code"
        );
        assert!(store.redeem_sign_in_code("clerk_a", &code, now).await.unwrap());
        assert!(
            !store.redeem_sign_in_code("clerk_a", &code, now).await.unwrap(),
            "used once"
        );

        let (cookie, session) = store.create_session("clerk_a", now, Duration::hours(12)).await.unwrap();
        let found = store.session(&cookie, now + Duration::hours(1)).await.unwrap().unwrap();
        assert_eq!(
            (found.person.as_str(), found.csrf.as_str()),
            ("clerk_a", session.csrf.as_str())
        );
        assert!(
            store
                .session(&cookie, now + Duration::hours(13))
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        store.end_session(&cookie).await.unwrap();
        assert!(store.session(&cookie, now).await.unwrap().is_none(), "signed out");

        // Attempts are taken up to the cap in a window that opens at the first; a sign-in
        // clears its account's and gives its address one back.
        let window = Duration::minutes(15);
        for minute in 0..5 {
            let at = now + Duration::minutes(minute);
            assert_eq!(
                store
                    .take_sign_in_attempt("person:clerk_a", 5, window, at)
                    .await
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            store
                .take_sign_in_attempt("person:clerk_a", 5, window, now + Duration::minutes(6))
                .await
                .unwrap(),
            Some(now + window),
            "{}",
            db.label
        );
        assert_eq!(
            store
                .take_sign_in_attempt("person:clerk_a", 5, window, now + window)
                .await
                .unwrap(),
            None,
            "a new window"
        );
        assert_eq!(store.sign_in_attempts("person:clerk_a").await.unwrap(), 1);
        for _ in 0..2 {
            store.take_sign_in_attempt("ip:1", 30, window, now).await.unwrap();
        }
        store.signed_in("person:clerk_a", "ip:1", now - window).await.unwrap();
        assert_eq!(store.sign_in_attempts("person:clerk_a").await.unwrap(), 0);
        assert_eq!(store.sign_in_attempts("ip:1").await.unwrap(), 1, "{}", db.label);

        // Twenty attempts at one moment: five are taken, fifteen refused. (Counting first
        // and recording after let every one of them through.)
        let mut tries = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = store.clone();
            tries.spawn(async move { store.take_sign_in_attempt("person:clerk_b", 5, window, now).await });
        }
        let answers = tries.join_all().await;
        let taken = answers.iter().filter(|a| matches!(a, Ok(None))).count();
        assert_eq!(taken, 5, "{}: {answers:?}", db.label);
    }
}

#[tokio::test]
async fn attachments_are_stored_once_by_their_hash_and_read_by_their_uploaders_or_through_an_instance() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let store = &rt.store;
        let rt = &rt;
        let scope = |who: &'static str| async move { rt.scope(&rt.store.actor(who).await.unwrap()) };
        // Every byte value, so a text column or an encoding step would show.
        let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let first = store
            .put_attachment(&bytes, "image/png", "clerk_a", t0())
            .await
            .unwrap();
        let again = store
            .put_attachment(&bytes, "image/png", "clerk_b", t0())
            .await
            .unwrap();
        assert_eq!(first, again, "{}", db.label);
        assert!(first.starts_with("sha256:"));
        let got = store
            .attachment_for(&first, &scope("clerk_b").await, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.content_type.as_str(), got.content == bytes),
            ("image/png", true),
            "{}",
            db.label
        );
        assert!(
            store
                .attachment_for(&first, &scope("clerk_a").await, None)
                .await
                .unwrap()
                .is_some()
        );
        let boss = scope("boss").await;
        assert!(
            store.attachment_for(&first, &boss, None).await.unwrap().is_none(),
            "{}",
            db.label
        );
        // An instance he may read opens only the files it refers to (the ticket's photos
        // through its ticket: tests/web.rs).
        let inst = rt
            .start("clerk_a", "review", "a", serde_json::json!({"amount": 5000}))
            .await
            .unwrap();
        assert!(
            store
                .attachment_for(&first, &boss, Some(&inst.id))
                .await
                .unwrap()
                .is_none(),
            "not referred to"
        );
        assert!(store.attachment_for("sha256:00", &boss, None).await.unwrap().is_none());
    }
}
