//! Who and where: a read-only user, an operator user, the Hertz schema's
//! refusal, a Redis Cluster.

use super::*;

/// The README's client user (read-only scripts, `HMGET`, no `HGETALL`)
/// reads the overrides applied, and is pushed their events.
#[tokio::test]
async fn a_read_only_user_sees_the_overrides_applied() {
    let redis = RedisServer::start();
    // The `sd-client` line of the README's threat model section.
    let acl = "ACL SETUSER reader on >pw resetkeys ~sd:* resetchannels &sd:* -@all +evalsha_ro +eval_ro +time +zrangebyscore +hmget +smembers +exists +subscribe +unsubscribe +ping";
    redis.cmd::<()>(&acl.split(' ').collect::<Vec<_>>());
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let _b = registry
        .register("orders", Instance::new("10.0.0.2:80").unwrap())
        .await
        .unwrap();
    let url = redis.url().replace("redis://", "redis://reader:pw@");
    let reader = resolver(&url).await;
    let orders = redis_discovery::ServiceName::new("orders").unwrap();
    assert_eq!(reader.resolve(&orders).await.unwrap().len(), 2);
    registry
        .set_override("orders", "10.0.0.1:80", Override::Weight(3))
        .await
        .unwrap();
    registry
        .set_override("orders", "10.0.0.2:80", Override::Disabled)
        .await
        .unwrap();
    eventually("both overrides applied for the read-only user", || async {
        let snapshot = reader.cached("orders")?;
        let weights: Vec<_> = snapshot
            .instances()
            .iter()
            .map(|i| (i.addr().to_owned(), i.weight()))
            .collect();
        (weights == [("10.0.0.1:80".to_owned(), 3)]).then_some(())
    })
    .await;
    let listed = reader.list("orders").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].registered_weight, Some(10));
}

#[tokio::test]
async fn the_hertz_schema_refuses_overrides() {
    let redis = RedisServer::start();
    let hertz = RedisRegistry::builder(redis.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let refused = |result: Result<(), RegistryError>| {
        let error = result.unwrap_err();
        assert!(
            matches!(error, RegistryError::OverridesUnsupported),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("the Hertz schema has no room for operator overrides"),
            "{error}"
        );
    };
    refused(
        hertz
            .set_override("orders", "10.0.0.1:80", Override::drain())
            .await
            .map(drop),
    );
    refused(
        hertz
            .clear_override("orders", "10.0.0.1:80")
            .await
            .map(drop),
    );
    refused(hertz.overrides("orders").await.map(drop));
    refused(hertz.all_overrides().await.map(drop));
    assert!(redis.keys().is_empty(), "nothing written");
}

/// On a Redis Cluster: the overrides key shares its service's slot (the
/// scripts' keys), the listing reads every node, and events from every
/// node reach the resolver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_work_on_a_cluster() {
    let cluster = support::RedisCluster::start(3);
    let registry = RedisRegistry::builder(cluster.url())
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let resolver = RedisResolver::builder(cluster.url())
        .refresh_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    // One service per node.
    let names: Vec<String> = (0..3)
        .map(|node| {
            (0..1000)
                .map(|i| format!("svc-{i}"))
                .find(|n| cluster.node_of(&format!("sd:{{{n}}}:instances")) == node)
                .unwrap()
        })
        .collect();
    let mut registrations = Vec::new();
    for name in &names {
        let instance = Instance::new("10.0.0.1:80").unwrap();
        registrations.push(registry.register(name.as_str(), instance).await.unwrap());
        let service = redis_discovery::ServiceName::new(name.as_str()).unwrap();
        resolver.resolve(&service).await.unwrap();
        registry
            .set_override(name.as_str(), "10.0.0.1:80", Override::drain())
            .await
            .unwrap();
    }
    for name in &names {
        eventually("the drain by event from its node", || async {
            let snapshot = resolver.cached(name)?;
            (snapshot.instances()[0].weight() == 0).then_some(())
        })
        .await;
    }
    let mut listed: Vec<String> = registry
        .all_overrides()
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);
}

/// The operator user the README's draft names: the server user's write
/// commands plus `HGETALL` and `SMEMBERS` to list.
#[tokio::test]
async fn an_operator_user_with_the_documented_commands_is_enough() {
    let redis = RedisServer::start();
    let acl = "ACL SETUSER operator on >pw resetkeys ~sd:* resetchannels &sd:* -@all +evalsha +eval +time +hget +hset +hdel +zscore +zrevrange +pexpireat +publish +hgetall +smembers +ping";
    redis.cmd::<()>(&acl.split(' ').collect::<Vec<_>>());
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let url = redis.url().replace("redis://", "redis://operator:pw@");
    let operator = RedisRegistry::connect(url).await.unwrap();
    assert!(operator
        .set_override("orders", "10.0.0.1:80", Override::drain())
        .await
        .unwrap());
    assert_eq!(operator.overrides("orders").await.unwrap().len(), 1);
    assert_eq!(operator.all_overrides().await.unwrap().len(), 1);
    assert!(operator
        .clear_override("orders", "10.0.0.1:80")
        .await
        .unwrap());
}
