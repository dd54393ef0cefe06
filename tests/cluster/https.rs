//! HTTPS on the public port (`tls_cert`/`tls_key` in `cluster.toml`), checked with curl as the
//! TLS client: sign-in, the API and objects (whole, cached and ranged) over TLS with the node's
//! certificate verified; a client that does not trust the certificate gets nowhere.

use std::process::Command;

use serde_json::Value;
use tessera_cluster_tests::{Options, TestCluster, ADMIN_PASSWORD};

use crate::support::{image, upload};

/// Runs curl quietly (`-sS`); returns its exit code and standard output.
fn curl(args: &[&str]) -> (i32, Vec<u8>) {
    let out = Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .expect("curl is required for the HTTPS test");
    (out.status.code().unwrap_or(-1), out.stdout)
}

#[tokio::test]
async fn https_serves_sign_in_api_and_objects_with_the_configured_certificate() {
    let cluster = TestCluster::start(Options {
        https: true,
        ..Options::default()
    })
    .await;
    // The harness's own client speaks plain HTTP: loopback clients may.
    let bytes = image(41);
    let sha = upload(&cluster.node(1).client(), &bytes).await;
    let ca = cluster.ca_cert();
    let ca = ca.to_str().expect("utf-8 path");
    let base = format!("https://{}", cluster.node(2).http);

    let password = format!("password={ADMIN_PASSWORD}");
    let (code, out) = curl(&[
        "--cacert",
        ca,
        "-d",
        "grant_type=password",
        "-d",
        "username=admin",
        "--data-urlencode",
        &password,
        &format!("{base}/oauth/token"),
    ]);
    assert_eq!(code, 0, "sign-in over HTTPS");
    let grant: Value = serde_json::from_slice(&out).expect("token JSON");
    let token = grant["access_token"].as_str().expect("access token");
    let auth = format!("Authorization: Bearer {token}");

    let (code, out) = curl(&["--cacert", ca, "-H", &auth, &format!("{base}/api/v1/me")]);
    assert_eq!(code, 0);
    let me: Value = serde_json::from_slice(&out).expect("me JSON");
    assert_eq!(me["username"], "admin", "{me}");

    // Objects come from user space over TLS (no sendfile): a miss, then the cached copy.
    let object = format!("{base}/objects/{sha}");
    for attempt in ["first", "cached"] {
        let (code, out) = curl(&["--cacert", ca, "-i", "-H", &auth, &object]);
        assert_eq!(code, 0, "{attempt}");
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head and body");
        let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{attempt}: {head}");
        assert!(head.contains("content-security-policy: sandbox"), "{head}");
        assert_eq!(&out[split + 4..], &bytes[..], "{attempt}: the bytes");
    }
    let (code, out) = curl(&["--cacert", ca, "-r", "10-19", "-H", &auth, &object]);
    assert_eq!(code, 0);
    assert_eq!(&out[..], &bytes[10..20], "a range");

    // Without the CA, curl cannot verify the node: exit 60 (peer certificate not trusted).
    let (code, _) = curl(&[&format!("{base}/healthz")]);
    assert_eq!(code, 60, "an untrusted certificate was accepted");
}
