//! Cancel safety: a dropped deregister, update or shutdown still ends
//! what it started.

use super::*;

/// Issue 11, item 4: a `deregister()` cut short by a timeout while Redis
/// refuses writes still ends the registration: the registry forgets it, its
/// heartbeat stops, and the instance is gone (removed, or its lease runs
/// out). Cut while the instance is being removed (and the pause outlasts
/// the command timeout), and while another registration in flight makes it
/// wait its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_deregister_still_ends_the_registration() {
    let server = RedisServer::start();
    let heartbeat = Duration::from_secs(1);
    let registry = RedisRegistry::builder(server.url())
        .lease_ttl(Duration::from_secs(2))
        .heartbeat_interval(heartbeat)
        .connect()
        .await
        .unwrap();
    for contended in [false, true] {
        let reg = registry.register("orders", instance(1)).await.unwrap();
        server.cmd::<()>(&["CLIENT", "PAUSE", "5000", "WRITE"]);
        let in_flight = contended.then(|| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.register("orders", instance(2)).await })
        });
        if contended {
            eventually(
                "the registration in flight to be held by the pause",
                || async {
                    let info: String = server.cmd(&["INFO", "clients"]);
                    (!info.contains("blocked_clients:0")).then_some(())
                },
            )
            .await;
        }
        let cut = tokio::time::timeout(Duration::from_millis(200), reg.deregister()).await;
        assert!(
            cut.is_err(),
            "Redis is paused: the deregister cannot finish"
        );
        if contended {
            server.cmd::<()>(&["CLIENT", "UNPAUSE"]);
        } else {
            // The pause runs its course (longer than the command timeout):
            // this write waits for its end.
            server.cmd::<()>(&["SET", "pause-is-over", "1"]);
        }
        if let Some(task) = in_flight {
            // It may have failed on the pause, or gone through after it.
            if let Ok(Ok(other)) = task.await {
                other.deregister().await.unwrap();
            }
        }

        eventually("the registry to forget the registration", || async {
            format!("{registry:?}")
                .contains("registrations: 0")
                .then_some(())
        })
        .await;
        eventually("the instance to be gone", || async {
            (!live(&server, "orders", "127.0.0.1:1")).then_some(())
        })
        .await;
        // No heartbeat brings it back.
        let quiet = Instant::now() + heartbeat * 4;
        while Instant::now() < quiet {
            assert!(
                !live(&server, "orders", "127.0.0.1:1"),
                "contended: {contended}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Issue 11, item 4: `update()`, `deregister()` by address and `shutdown()`
/// cut short while Redis refuses writes still run to their end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_update_deregister_and_shutdown_still_finish() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let cut = Duration::from_millis(200);
    let pause = || server.cmd::<()>(&["CLIENT", "PAUSE", "5000", "WRITE"]);
    let unpause = || server.cmd::<()>(&["CLIENT", "UNPAUSE"]);

    // An update cut short is written, and is what the heartbeat keeps.
    let reg = registry.register("orders", instance(1)).await.unwrap();
    pause();
    let update = tokio::time::timeout(cut, reg.update(instance(1).with_weight(3))).await;
    assert!(update.is_err(), "Redis is paused: the update cannot finish");
    unpause();
    eventually("the cut-short update to reach Redis", || async {
        let json: String = server.cmd(&["HGET", "sd:{orders}:instances", "127.0.0.1:1"]);
        json.contains(r#""weight":3"#).then_some(())
    })
    .await;
    lease_renewed(&server, "orders", "127.0.0.1:1").await;
    assert_eq!(reg.instance().weight(), 3);

    // A deregister by address cut short removes the instance and stops
    // this registry's heartbeat for it.
    pause();
    let removal = tokio::time::timeout(cut, registry.deregister("orders", "127.0.0.1:1")).await;
    assert!(
        removal.is_err(),
        "Redis is paused: the deregister cannot finish"
    );
    unpause();
    eventually("the instance to be removed", || async {
        listed(&server, "orders").is_empty().then_some(())
    })
    .await;
    drop(reg);

    // A shutdown cut short ends every registration.
    let _a = registry.register("orders", instance(2)).await.unwrap();
    let _b = registry.register("billing", instance(3)).await.unwrap();
    pause();
    let shutdown = tokio::time::timeout(cut, registry.shutdown()).await;
    assert!(
        shutdown.is_err(),
        "Redis is paused: the shutdown cannot finish"
    );
    unpause();
    eventually("every instance to be removed", || async {
        (listed(&server, "orders").is_empty() && listed(&server, "billing").is_empty())
            .then_some(())
    })
    .await;
    assert!(format!("{registry:?}").contains("registrations: 0"));
    let before = server.writes();
    tokio::time::sleep(HEARTBEAT * 4).await;
    assert_eq!(server.writes(), before, "{:?}", server.commandstats());
}

/// Whether `addr` holds an unexpired lease in `service` (readers skip an
/// expired one; its entry stays in the hash for a grace period).
fn live(server: &RedisServer, service: &str, addr: &str) -> bool {
    let time: Vec<String> = server.cmd(&["TIME"]);
    let now_ms = time[0].parse::<f64>().unwrap() * 1000.0;
    support::lease(server, service, addr).is_some_and(|deadline| deadline >= now_ms)
}
