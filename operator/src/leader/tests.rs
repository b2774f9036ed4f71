//! The election rules, and electors against a mocked Lease API that keeps state and checks
//! resourceVersions as the API server does.

use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;

const LEASE: Duration = Duration::from_secs(15);

fn observed(holder: Option<&str>, since: Instant) -> Observed {
    Observed {
        holder: holder.map(str::to_owned),
        renew_time: Some("t".to_owned()),
        transitions: 0,
        since,
    }
}

#[test]
fn the_rules_of_the_lease() {
    let now = Instant::now();
    assert_eq!(decide(None, "a", now, LEASE), Decision::Create);
    assert_eq!(
        decide(Some(&observed(Some("a"), now)), "a", now, LEASE),
        Decision::Renew
    );
    assert_eq!(decide(Some(&observed(None, now)), "a", now, LEASE), Decision::TakeOver);
    assert_eq!(
        decide(Some(&observed(Some(""), now)), "a", now, LEASE),
        Decision::TakeOver
    );
    let held = observed(Some("b"), now);
    assert_eq!(decide(Some(&held), "a", now + LEASE / 2, LEASE), Decision::Wait);
    assert_eq!(
        decide(Some(&held), "a", now + LEASE, LEASE),
        Decision::TakeOver,
        "unchanged for a whole lease by our clock"
    );
}

/// The Lease as the mocked API server stores it, with its resourceVersion.
#[derive(Default)]
struct Store {
    lease: Option<Value>,
    version: u64,
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("JSON")))
        .expect("a response")
}

fn failure(code: u16, reason: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).expect("a status"),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": reason, "reason": reason, "code": code}),
    )
}

fn answer(store: &Mutex<Store>, method: &str, body: Value) -> Response<Body> {
    let mut store = store.lock().expect("the store lock");
    let stored = |mut lease: Value, store: &mut Store| {
        store.version += 1;
        lease["metadata"]["resourceVersion"] = json!(store.version.to_string());
        store.lease = Some(lease.clone());
        lease
    };
    match method {
        "GET" => match &store.lease {
            Some(lease) => respond(StatusCode::OK, lease),
            None => failure(404, "NotFound"),
        },
        "POST" if store.lease.is_some() => failure(409, "AlreadyExists"),
        "POST" => respond(StatusCode::CREATED, &stored(body, &mut store)),
        "PUT" => {
            let current = store.lease.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
            if current != Some(body["metadata"]["resourceVersion"].clone()) {
                return failure(409, "Conflict");
            }
            respond(StatusCode::OK, &stored(body, &mut store))
        }
        other => panic!("unexpected {other}"),
    }
}

/// An elector whose client talks to the shared store.
fn elector(store: &Arc<Mutex<Store>>, me: &str) -> Elector {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let store = store.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("a body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON")
            };
            send.send_response(answer(&store, parts.method.as_str(), body));
        }
    });
    let client = kube::Client::new(service, "ns1");
    Elector::new(
        Api::namespaced(client, "ns1"),
        "tinysns-operator",
        me,
        Timing::default(),
    )
}

fn holder(store: &Mutex<Store>) -> Option<String> {
    let store = store.lock().expect("lock");
    store.lease.as_ref()?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(start_paused = true)]
async fn one_replica_leads_and_the_other_waits() {
    let store = Arc::new(Mutex::new(Store::default()));
    let mut a = elector(&store, "a");
    let mut b = elector(&store, "b");
    assert_eq!(a.acquire(std::future::pending()).await, Some(()));
    assert_eq!(holder(&store).as_deref(), Some("a"));
    let waited = b.acquire(tokio::time::sleep(LEASE / 2)).await;
    assert_eq!(waited, None, "a's record is younger than a lease: b waits");
    assert!(a.try_acquire_or_renew().await.expect("renews"));
    assert!(!b.try_acquire_or_renew().await.expect("reads"));
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_stops_renewing_is_replaced_after_a_lease() {
    let store = Arc::new(Mutex::new(Store::default()));
    let mut a = elector(&store, "a");
    let mut b = elector(&store, "b");
    assert!(a.try_acquire_or_renew().await.expect("a creates the lease"));
    let started = Instant::now();
    // a dies: nobody renews. b takes over once the record has been still for a lease.
    assert_eq!(b.acquire(std::future::pending()).await, Some(()));
    assert!(
        started.elapsed() >= LEASE,
        "not before a whole lease: {:?}",
        started.elapsed()
    );
    assert_eq!(holder(&store).as_deref(), Some("b"));
    let transitions = store.lock().expect("lock").lease.as_ref().expect("lease")["spec"]["leaseTransitions"].clone();
    assert_eq!(transitions, json!(1));
    // a comes back: it finds b holding the lease and stops leading.
    assert_eq!(a.hold().await, Lost::TakenBy("b".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let store = Arc::new(Mutex::new(Store::default()));
    let mut a = elector(&store, "a");
    let mut b = elector(&store, "b");
    assert!(a.try_acquire_or_renew().await.expect("a leads"));
    assert!(!b.try_acquire_or_renew().await.expect("b waits"));
    a.release().await;
    assert_eq!(holder(&store), None);
    let started = Instant::now();
    assert!(b.try_acquire_or_renew().await.expect("b takes over"));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn of_two_replicas_racing_for_a_free_lease_one_wins() {
    let store = Arc::new(Mutex::new(Store::default()));
    let mut a = elector(&store, "a");
    let mut b = elector(&store, "b");
    // Both saw no lease; both try to create it.
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let (ra, rb) = (ra.expect("a's round"), rb.expect("b's round"));
    assert!(ra ^ rb, "exactly one leads: a {ra}, b {rb}");
    // And a stale write (an old resourceVersion) is refused, not applied.
    let winner = holder(&store).expect("a holder");
    let loser = if winner == "a" { b } else { a };
    let stale = loser.api.get("tinysns-operator").await.expect("the lease");
    // The winner renews; the loser then writes what it read before: refused.
    let mut renewer = elector(&store, &winner);
    assert!(renewer.try_acquire_or_renew().await.expect("renews"));
    let mut write = stale.clone();
    write.spec.get_or_insert_default().holder_identity = Some(loser.identity().to_owned());
    let refused = loser
        .api
        .replace("tinysns-operator", &PostParams::default(), &write)
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(s)) if s.code == 409),
        "a stale write is a conflict"
    );
    assert_eq!(holder(&store), Some(winner));
}
