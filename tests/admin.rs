//! Enabling and disabling change streaming: replica identity set and restored, tables
//! without a key refused, odd names quoted, never injected.

use pg_changestream::group::identity::{
    disable_change_streaming, enable_change_streaming, enabled_with_before_images,
};
use pg_changestream::group::table::TableName;
use pg_changestream::testing::TestServer;

async fn identity(client: &tokio_postgres::Client, table: &TableName) -> String {
    let row = client
        .query_one(
            "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema(), &table.name()],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn before_images_switch_replica_identity_and_disable_restores_it() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let mut client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE keyed (id int PRIMARY KEY, v text);
             CREATE TABLE by_index (a int NOT NULL, b text);
             CREATE UNIQUE INDEX by_index_a ON by_index (a);
             ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_a;",
        )
        .await
        .unwrap();
    let keyed: TableName = "keyed".parse().unwrap();
    enable_change_streaming(&mut client, &keyed, true)
        .await
        .unwrap();
    assert_eq!(identity(&client, &keyed).await, "f");
    assert_eq!(
        enabled_with_before_images(&client, &keyed).await.unwrap(),
        Some(true)
    );
    enable_change_streaming(&mut client, &keyed, false)
        .await
        .unwrap();
    assert_eq!(identity(&client, &keyed).await, "d");
    enable_change_streaming(&mut client, &keyed, true)
        .await
        .unwrap();
    disable_change_streaming(&mut client, &keyed).await.unwrap();
    assert_eq!(identity(&client, &keyed).await, "d");
    assert_eq!(
        enabled_with_before_images(&client, &keyed).await.unwrap(),
        None
    );

    let by_index: TableName = "by_index".parse().unwrap();
    enable_change_streaming(&mut client, &by_index, true)
        .await
        .unwrap();
    assert_eq!(identity(&client, &by_index).await, "f");
    disable_change_streaming(&mut client, &by_index)
        .await
        .unwrap();
    assert_eq!(
        identity(&client, &by_index).await,
        "i",
        "USING INDEX restored"
    );
}

#[tokio::test]
async fn a_table_without_key_needs_before_images() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let mut client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE heap (v text)")
        .await
        .unwrap();
    let heap: TableName = "heap".parse().unwrap();
    let err = enable_change_streaming(&mut client, &heap, false)
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(
        err.to_string()
            .contains("table public.heap has no primary key"),
        "{err}"
    );
    assert!(err.to_string().contains("REPLICA IDENTITY FULL"), "{err}");
    assert_eq!(identity(&client, &heap).await, "d", "nothing changed");
    enable_change_streaming(&mut client, &heap, true)
        .await
        .unwrap();
    assert_eq!(identity(&client, &heap).await, "f");
    // Switching before-images off would make its updates fail: refused, FULL kept.
    assert!(enable_change_streaming(&mut client, &heap, false)
        .await
        .is_err());
    assert_eq!(identity(&client, &heap).await, "f");
}

#[tokio::test]
async fn missing_tables_and_disabled_tables_are_clear_errors() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let mut client = db.connect().await.unwrap();
    let ghost: TableName = "nope.ghost".parse().unwrap();
    let err = enable_change_streaming(&mut client, &ghost, true)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("table nope.ghost does not exist"),
        "{err}"
    );
    let err = disable_change_streaming(&mut client, &ghost)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not enabled"), "{err}");
}

#[tokio::test]
async fn hostile_table_names_are_quoted_not_injected() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let mut client = db.connect().await.unwrap();
    let names = [
        "x\"; DROP TABLE victim; --",
        "with space",
        "Ünïcødé 表",
        "semi;colon'quote",
    ];
    client
        .batch_execute("CREATE TABLE victim (id int PRIMARY KEY)")
        .await
        .unwrap();
    for name in names {
        let table = TableName::new("public", name).unwrap();
        client
            .batch_execute(&format!(
                "CREATE TABLE {} (id int PRIMARY KEY)",
                table.quoted()
            ))
            .await
            .unwrap();
        enable_change_streaming(&mut client, &table, true)
            .await
            .unwrap();
        assert_eq!(identity(&client, &table).await, "f", "{name}");
        disable_change_streaming(&mut client, &table).await.unwrap();
    }
    let victim: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'victim'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(victim, 1);
}

#[tokio::test]
async fn concurrent_migrations_serialise() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(db.connect().await.unwrap());
    }
    let runs = clients
        .iter_mut()
        .map(pg_changestream::group::catalog::migrate);
    for result in futures_util::future::join_all(runs).await {
        result.unwrap();
    }
    let client = db.connect().await.unwrap();
    let versions: i64 = client
        .query_one("SELECT count(*) FROM changestream.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        versions,
        pg_changestream::group::catalog::SCHEMA_VERSION as i64
    );
}

/// The admin facade answers what `pg-changestream groups` and `status` show, refuses an
/// unknown group as not found, and deletes a group with a consumer attached only with force.
#[tokio::test]
async fn the_admin_facade_lists_inspects_and_deletes_groups() {
    use pg_changestream::admin::Admin;
    use pg_changestream::consumer::{ConsumerBuilder, StartLocation};
    use pg_changestream::ConnectConfig;

    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let config = ConnectConfig::new(db.config());
    let mut admin = Admin::connect(&config).await.unwrap();
    assert!(admin.groups().await.unwrap().is_empty());
    assert!(admin.status(None).await.unwrap().is_empty());
    assert!(admin.tables().await.unwrap().is_empty());
    admin
        .enable(&"items".parse().unwrap(), false)
        .await
        .unwrap();
    let tables = admin.tables().await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].table, "public.items");
    assert!(!tables[0].before_images);

    let consumer = ConsumerBuilder::new(config.clone(), "facade")
        .add_table("items", StartLocation::Latest)
        .partitions(2)
        .build()
        .await
        .unwrap();
    let groups = admin.groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].group, "facade");
    assert_eq!(groups[0].partitions, 2);
    assert_eq!(groups[0].tables[0].table, "public.items");
    assert_eq!(groups[0].members.len(), 1);
    let status = admin.status(Some("facade")).await.unwrap();
    assert_eq!(
        status.iter().map(|p| p.partition.get()).collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(status
        .iter()
        .all(|p| p.warnings.is_empty() && p.wal_status != "missing"));

    let missing = admin.status(Some("nosuch")).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(admin.delete_group("", false).await.unwrap_err().is_config());
    // Attached consumer: refused without force, stopped with it.
    let attached = admin.delete_group("facade", false).await;
    if let Err(e) = &attached {
        assert!(e.is_config(), "{e}");
        admin.delete_group("facade", true).await.unwrap();
    }
    assert!(admin.groups().await.unwrap().is_empty());
    drop(consumer);
    admin.disable(&"items".parse().unwrap()).await.unwrap();
    assert!(admin.tables().await.unwrap().is_empty());
}
