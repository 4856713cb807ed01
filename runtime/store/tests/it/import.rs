use crate::common::*;
use civicflow_store::org::ImportError;

#[tokio::test]
async fn a_bad_row_rejects_the_whole_import_with_its_line() {
    for db in databases() {
        let store = db.store().await;
        let mut units = vec![
            unit("city", None, "city"),
            unit("d", Some("city"), "district"),
            unit("c", Some("d"), "village-ish"),
            unit("g", Some("zz"), "grid"),
        ];
        for (i, u) in units.iter_mut().enumerate() {
            u.line = i + 2;
        }
        let mut people = vec![person("p1", "d", &["clerk"]), person("p2", "nowhere", &["clerk"])];
        people[0].line = 2;
        people[1].line = 3;
        let err = store.import_org(&units, &people, &|_| {}).await.unwrap_err();
        let ImportError::Rows(rows) = err else {
            panic!("{}: {err}", db.label)
        };
        let lines: Vec<(String, usize)> = rows.iter().map(|r| (r.file.clone(), r.line)).collect();
        assert_eq!(
            lines,
            vec![
                ("people.csv".into(), 3),
                ("units.csv".into(), 4),
                ("units.csv".into(), 5)
            ],
            "{}: {rows:?}",
            db.label
        );
        assert!(rows[1].message.contains("unknown unit kind"), "{}", rows[1].message);
        assert!(
            rows[2].message.contains("unknown parent unit \"zz\""),
            "{}",
            rows[2].message
        );
        assert_eq!(store.count_units().await.unwrap(), 0, "{}: nothing imported", db.label);
        assert_eq!(store.count_people().await.unwrap(), 0);

        // Fixed, the same import goes through, children listed before parents included.
        units.retain(|u| u.row.id != "g" && u.row.id != "c");
        units.reverse();
        people.pop();
        let summary = store.import_org(&units, &people, &|_| {}).await.unwrap();
        assert_eq!((summary.units, summary.people, summary.roles), (2, 1, 1));
        assert_eq!(store.unit_path("d").await.unwrap(), "/city/d/");
    }
}

#[tokio::test]
async fn cycles_and_duplicates_are_rejected() {
    for db in databases() {
        let store = db.store().await;
        let units = vec![
            unit("x", Some("y"), "street"),
            unit("y", Some("x"), "street"),
            unit("y", None, "city"),
        ];
        let ImportError::Rows(rows) = store.import_org(&units, &[], &|_| {}).await.unwrap_err() else {
            panic!()
        };
        assert!(rows.iter().any(|r| r.message.contains("twice")), "{rows:?}");
        assert_eq!(store.count_units().await.unwrap(), 0);
    }
}
