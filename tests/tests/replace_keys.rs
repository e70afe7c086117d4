//! An owner replaces the system secret and a server's link key: members online follow, a server
//! holding only the old secret becomes another system, and the new link key is pinned
//! everywhere.

use hive_tests::*;
use serde_json::json;

fn link_key_of(view: &serde_json::Value, server: &serde_json::Value) -> serde_json::Value {
    let servers = view["servers"].as_array().cloned().unwrap_or_default();
    servers.into_iter().find(|s| &s["id"] == server).map_or(json!(null), |s| s["link_key"].clone())
}

#[test]
fn a_replaced_secret_reaches_every_member_and_the_old_one_opens_nothing() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Plant", "secret-plant", port));
    let mut b = Hive::start(Spec::new("b", "Plant", "secret-plant", port));
    wait_for("two servers to merge", CONVERGE, || merged(&[&a, &b]));

    let (viewer_status, _) = {
        let (s, _) = a.api().post(
            "/api/users",
            &json!({ "name": "adm", "password": "admin-password", "role": "admin" }),
        );
        assert_eq!(s, 201);
        Api::new(a.http, "adm", "admin-password").post("/api/system/secret", &json!({}))
    };
    assert_eq!(viewer_status, 403, "only the owner replaces the secret");

    let (status, answer) = a.api().post("/api/system/secret", &json!({}));
    assert_eq!(status, 200, "{answer}");
    let token = answer["join_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("hive-") && token.len() == 69, "{token}");
    // b took the new secret over its link: after a restart it links with it alone.
    b.stop();
    b.spawn();
    wait_for("b to rejoin with the new secret", CONVERGE, || merged(&[&a, &b]));

    // A newcomer with the old secret is another system now and gets no data.
    a.api().post("/api/settings", &json!({ "name": "site", "value": "North" }));
    let stale = Hive::start(Spec::new("c", "Plant", "secret-plant", port));
    wait_for("the old secret to be listed as another system", CONVERGE, || {
        let others = a.system()["other_systems"].as_array().cloned().unwrap_or_default();
        (!others.is_empty(), others)
    });
    let (_, settings) = stale.api().get("/api/settings");
    assert!(settings.get("site").is_none(), "{settings}");
}

#[test]
fn a_replaced_link_key_is_pinned_everywhere_and_the_links_come_back() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Mill", "secret-mill", port));
    let b = Hive::start(Spec::new("b", "Mill", "secret-mill", port));
    wait_for("two servers to merge", CONVERGE, || merged(&[&a, &b]));
    let b_id = b.system()["server_id"].clone();
    let old = link_key_of(&a.system(), &b_id);
    assert!(old.is_string(), "{old}");

    let (status, answer) = b.api().post("/api/link-key", &json!({}));
    assert_eq!(status, 200, "{answer}");
    let new = answer["link_key"].clone();
    assert_ne!(new, old);
    wait_for("a to pin b's new key and link again", CONVERGE, || {
        let (ok, views) = merged(&[&a, &b]);
        (ok && link_key_of(&a.system(), &b_id) == new, views)
    });
    assert!(!a.log_text().contains("KeyMismatch"), "{}", a.log_text());
}
