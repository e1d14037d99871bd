use super::*;

fn sentinel_of(url: &str) -> Arc<Sentinels> {
    match Endpoint::parse(url) {
        Ok(Endpoint::Sentinel(s)) => s,
        other => panic!("{url}: {other:?}"),
    }
}

fn error_of(url: &str) -> String {
    match Endpoint::parse(url) {
        Err(e) => e.to_string(),
        Ok(e) => panic!("{url} parsed: {e:?}"),
    }
}

/// Asserts that each URL is refused with an error naming the reason.
fn refused_because(cases: &[(&str, &str)]) {
    for (url, why) in cases {
        let e = error_of(url);
        assert!(e.contains(why), "{url}: {e}");
    }
}

#[test]
fn server_urls() {
    assert!(Endpoint::parse("redis://127.0.0.1:6379/0").is_ok());
    assert!(Endpoint::parse("redis://user:pw@127.0.0.1/2").is_ok());
    assert!(Endpoint::parse("http://127.0.0.1").is_err());
    assert!(Endpoint::parse("").is_err());
    assert!(Endpoint::parse("redis://").is_err());
    let e = error_of("http://u:secret@h");
    assert!(!e.contains("secret"), "{e}");
    assert!(!Endpoint::parse("redis://h").unwrap().follows_failovers());
}

#[test]
fn sentinel_urls() {
    let s = sentinel_of("redis+sentinel://127.0.0.1:26380,[::1],localhost/mymaster");
    assert_eq!(s.master, "mymaster");
    assert!(Endpoint::parse("redis+sentinel://h/m")
        .unwrap()
        .follows_failovers());
    sentinel_of("redis+sentinel://:p%40ss@h1:1,h2:2/my-master.1/3");
    sentinel_of("redis+sentinel://h/m?sentinel_password=only");
    sentinel_of("redis+sentinel://h/m/?");
    sentinel_of("redis+sentinel://h/m/2/");
    let s =
        sentinel_of("redis+sentinel://u:pa/ss@h/m?sentinel_username=a:b&sentinel_password=c%40d/e");
    assert_eq!(s.credentials.user.as_deref(), Some("u"));
    assert_eq!(s.credentials.password.as_deref(), Some("pa/ss"));
    assert_eq!(s.sentinel_credentials.user.as_deref(), Some("a:b"));
    assert_eq!(s.sentinel_credentials.password.as_deref(), Some("c@d/e"));
    let s = sentinel_of("redis+sentinel://:p%40ss@h/m/3");
    assert_eq!(
        (
            s.credentials.user.as_deref(),
            s.credentials.password.as_deref()
        ),
        (None, Some("p@ss"))
    );
    assert_eq!(s.db, 3);
}

#[test]
fn cluster_urls() {
    for url in [
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "redis+cluster://u:p%40ss@h:7000/",
        "redis+cluster://[::1]:7000",
        "redis+cluster://h",
    ] {
        match Endpoint::parse(url) {
            Ok(Endpoint::Cluster(seeds)) => assert!(!seeds.is_empty(), "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    let Ok(Endpoint::Cluster(seeds)) = Endpoint::parse("redis+cluster://:p%40ss@a:1,b:2") else {
        panic!("cluster URL")
    };
    assert_eq!(seeds.len(), 2);
    assert!(seeds
        .iter()
        .all(|s| s.redis_settings().password() == Some("p@ss")));
    refused_because(&[
        ("redis+cluster://h:7000/1", "no databases"),
        ("redis+cluster://a,,b", "cluster nodes"),
        ("redis+cluster://h:x", "cluster node #1"),
        ("redis+cluster://h?x=1", "no parameters"),
    ]);
}

#[test]
fn bad_sentinel_urls_say_why() {
    refused_because(&[
        ("redis+sentinel://h", "name the master"),
        ("redis+sentinel://h/", "master name"),
        ("redis+sentinel:///m", "Sentinel hosts"),
        ("redis+sentinel://a,,b/m", "Sentinel hosts"),
        ("redis+sentinel://h:notaport/m", "Sentinel host #1"),
        ("redis+sentinel://h/m/x", "database"),
        ("redis+sentinel://h/m/-1", "database"),
        ("redis+sentinel://h/m y", "master name"),
        ("redis+sentinel://h/m?db=2", "unknown parameter \"db\""),
    ]);
    for url in [
        "redis+sentinel://u:secret@h/m?sentinel_password=hidden&db=1",
        "redis+sentinel://u:se/cret@h:x/m",
        "redis+cluster://u:se/cret@h:x",
        "redis+sentinel://h/m?sentinel_pasword=secret",
    ] {
        let e = error_of(url);
        assert!(
            !e.contains("secret") && !e.contains("hidden") && !e.contains("cret"),
            "{e}"
        );
    }
}

/// Found by fuzz/fuzz_targets/redis_url.rs: the reason quoted a
/// parameter name, a master name or a database that, with an '@'
/// after a '?', may be part of the password the redacted URL hides.
#[test]
fn ambiguous_userinfo_is_not_quoted_in_errors() {
    for url in [
        // The fuzzer's input, its NULs replaced by the secrets.
        "redis+sentinel://u:Hunter00#pw@128.0.0.aster/3?senti\tHunter01#pwHunter02#pw\
         Hunter03#pwnel_usernam@128.0.0.ael_pass=Hunter04#pw",
        "redis+sentinel://u:1/Hunter01 x?y@h/m",
        "redis+sentinel://u:1/m/Hunter01?y@h/m",
        "redis+cluster://u:1/Hunter01?y@h",
    ] {
        let e = error_of(url);
        assert!(!e.contains("Hunter"), "{url}: {e}");
        assert!(e.contains("where the password ends is unclear"), "{e}");
    }
    // Without that ambiguity the reason still names the culprit.
    refused_because(&[("redis+sentinel://u:p@h/m?x=1", "unknown parameter \"x\"")]);
}

#[test]
fn redaction() {
    assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
    assert_eq!(redact("redis://h:1"), "redis://h:1");
    assert_eq!(
        redact("unix:///run/redis.sock?db=1&pass=secret"),
        "unix:///run/redis.sock?db=1&pass=***"
    );
    assert_eq!(
        redact("redis+sentinel://u:pw@a:1,b:2/m?sentinel_password=s&sentinel_username=x"),
        "redis+sentinel://u:***@a:1,b:2/m?sentinel_password=***&sentinel_username=x"
    );
    // A '/' in a password, a mistyped parameter.
    assert_eq!(redact("redis://u:pa/ss@h:1/0"), "redis://u:***@h:1/0");
    assert_eq!(
        redact("redis+sentinel://h/m?sentinel_pasword=topsecret"),
        "redis+sentinel://h/m?sentinel_pasword=***"
    );
    // A '?' in a password, an '@' in a query value: all is hidden.
    for url in [
        "redis://u:p?x=y@h",
        "redis+sentinel://h/m?sentinel_password=pa@ss",
        "redis+sentinel://h/m?sentinel_password=se:cr@et",
        "unix:///run/redis.sock?db=1&pass=se@cret",
    ] {
        let scheme = &url[..url.find("://").unwrap() + 3];
        assert_eq!(redact(url), format!("{scheme}***"));
    }
}
