use super::*;
use crate::connection::Timeouts;
use crate::schema::KeySchema;

fn check(b: ResolverBuilder) -> Result<(), ValidationError> {
    b.validate().map(drop)
}

#[test]
fn validation() {
    let b = || ResolverBuilder::new("redis://127.0.0.1:1".into());
    let s = Duration::from_secs;
    assert!(check(b()).is_ok());
    assert!(check(b().max_staleness(s(11))).is_ok());
    assert!(check(
        b().allow_networks(["10.0.0.0/8", "::1/128"])
            .allow_networks(vec!["192.168.0.0/16".to_owned()])
            .allow_ports(8000..=8999)
            .allow_ports(1..=1)
    )
    .is_ok());
    let at_the_bounds = b()
        .refresh_interval(ResolverBuilder::MAX_REFRESH_INTERVAL)
        .idle_expiry(ResolverBuilder::MAX_IDLE_EXPIRY)
        .max_staleness(ResolverBuilder::MAX_STALENESS)
        .negative_ttl(ResolverBuilder::MAX_NEGATIVE_TTL)
        .max_services(ResolverBuilder::MAX_SERVICES)
        .connect_timeout(ResolverBuilder::MAX_TIMEOUT)
        .command_timeout(ResolverBuilder::MAX_TIMEOUT);
    assert!(check(at_the_bounds).is_ok());
    let over = |d: Duration| d + Duration::from_millis(1);
    for bad in [
        b().refresh_interval(s(0)),
        b().idle_expiry(s(0)),
        b().max_staleness(s(10)),
        b().refresh_interval(s(60)).max_staleness(s(30)),
        b().connect_timeout(s(0)),
        b().command_timeout(s(0)),
        b().refresh_interval(over(ResolverBuilder::MAX_REFRESH_INTERVAL)),
        b().refresh_interval(Duration::MAX),
        b().idle_expiry(over(ResolverBuilder::MAX_IDLE_EXPIRY)),
        b().idle_expiry(Duration::MAX),
        b().max_staleness(over(ResolverBuilder::MAX_STALENESS)),
        b().max_staleness(Duration::MAX),
        b().negative_ttl(s(0)),
        b().negative_ttl(over(ResolverBuilder::MAX_NEGATIVE_TTL)),
        b().negative_ttl(Duration::MAX),
        b().max_services(0),
        b().max_services(ResolverBuilder::MAX_SERVICES + 1),
        b().max_services(usize::MAX),
        b().recovery_grace(over(ResolverBuilder::MAX_RECOVERY_GRACE)),
        b().recovery_grace(Duration::MAX),
        b().connect_timeout(over(ResolverBuilder::MAX_TIMEOUT)),
        b().command_timeout(Duration::MAX),
        b().timeouts(Timeouts {
            connect: Duration::MAX,
            command: Duration::MAX,
        }),
        b().prefix(""),
        b().prefix("a b"),
        b().allow_networks(["10.0.0.0/33"]),
        b().allow_networks(["10.0.0.0/8", "not a network"]),
        b().allow_ports(0..=80),
        b().allow_ports(RangeInclusive::new(2, 1)),
    ] {
        assert!(
            matches!(check(bad.clone()), Err(ValidationError::Config(_))),
            "{bad:?}"
        );
    }
    let debug = format!("{:?}", ResolverBuilder::new("redis://u:secret@h".into()));
    assert!(!debug.contains("secret"), "{debug}");
    assert!(matches!(
        check(ResolverBuilder::new("http://x".into())),
        Err(ValidationError::RedisUrl { .. })
    ));
}

#[test]
fn the_recovery_grace_defaults_to_one_heartbeat_plus_a_margin() {
    let b = || ResolverBuilder::new("redis://127.0.0.1:1".into());
    let s = Duration::from_secs;
    assert_eq!(b().recovery_grace_or_default(), s(10));
    assert_eq!(
        b().schema(KeySchema::Hertz).recovery_grace_or_default(),
        s(35)
    );
    assert_eq!(b().recovery_grace(s(3)).recovery_grace_or_default(), s(3));
    assert!(
        check(b().recovery_grace(Duration::ZERO)).is_ok(),
        "zero: off"
    );
    let debug = format!("{:?}", b());
    assert!(debug.contains("recovery_grace: 10s"), "{debug}");
}
