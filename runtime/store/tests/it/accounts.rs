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
        assert!(store.check_password("clerk_a", "a long enough secret").await.unwrap());
        assert!(!store.check_password("clerk_a", "a long enough secreT").await.unwrap());
        assert!(
            !store.check_password("clerk_b", "").await.unwrap(),
            "no password set: never matches"
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

        store
            .record_sign_in_failure(&["person:clerk_a", "ip:1"], now)
            .await
            .unwrap();
        store
            .record_sign_in_failure(&["person:clerk_a"], now + Duration::minutes(1))
            .await
            .unwrap();
        let (count, oldest) = store
            .sign_in_failures("person:clerk_a", now - Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!((count, oldest), (2, Some(now)), "{}", db.label);
        store
            .clear_sign_in_failures("person:clerk_a", now - Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!(
            store
                .sign_in_failures("person:clerk_a", now - Duration::minutes(15))
                .await
                .unwrap()
                .0,
            0
        );
        assert_eq!(
            store
                .sign_in_failures("ip:1", now - Duration::minutes(15))
                .await
                .unwrap()
                .0,
            1
        );
    }
}

#[tokio::test]
async fn attachments_are_stored_once_by_their_hash() {
    for db in databases() {
        let store = db.store().await;
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
        let got = store.attachment(&first).await.unwrap().unwrap();
        assert_eq!(
            (got.content_type.as_str(), got.content == bytes),
            ("image/png", true),
            "{}",
            db.label
        );
        assert!(store.attachment("sha256:00").await.unwrap().is_none());
    }
}
