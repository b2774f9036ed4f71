//! The gateway's HTTP API and live WebSocket against the real system: sessions by cookie,
//! CSRF and origin checks, limits, errors in one JSON shape, acting only for the session's
//! user, and a live stream that survives a failover without a gap or a repeat.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tinysns_stack::gateway::Gateway;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One browser: the session cookie and CSRF token it got at login.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(gateway: &Gateway) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: gateway.url.clone(),
            cookie: None,
            csrf: None,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        if method != Method::GET
            && let Some(csrf) = &self.csrf
        {
            request = request.header("X-CSRF-Token", csrf);
        }
        request
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
        body
    }

    /// Logs in (or registers) and keeps the cookie; returns the Set-Cookie header.
    async fn enter(&mut self, path: &str, username: &str) -> String {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .expect("the gateway answers");
        assert_eq!(response.status(), StatusCode::OK, "{path} {username}");
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        self.cookie = Some(set_cookie.split(';').next().unwrap().to_string());
        self.csrf = Some(body["csrf"].as_str().unwrap().to_string());
        assert_eq!(body["username"], username);
        set_cookie
    }

    /// Opens the live WebSocket, resuming after `after`.
    async fn live(&self, after: u64) -> Live {
        self.try_live(after).await.expect("the WebSocket opens")
    }

    /// [`Self::live`], or the HTTP status that refused it.
    async fn try_live(&self, after: u64) -> Result<Live, Option<u16>> {
        let url = format!("{}/api/live?after={after}", self.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert("Cookie", self.cookie.clone().unwrap().parse().unwrap());
        headers.insert("Origin", self.base.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(Live { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(Some(response.status().as_u16())),
            Err(_) => Err(None),
        }
    }
}

struct Live {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Live {
    /// Sends `text` as the page would.
    async fn say(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .expect("the socket takes it");
    }

    /// The next event of `kind`, skipping others, within `timeout`.
    async fn next(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).expect("events are JSON");
                if event["kind"] == kind {
                    return Some(event);
                }
            }
        }
    }

    /// Every event within `window`.
    async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + window;
        let mut events = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            if let Message::Text(text) = message {
                events.push(serde_json::from_str(&text).unwrap());
            }
        }
        events
    }
}

/// Every API route that needs a session, with a body where it takes one.
fn session_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::POST, "/api/logout", None),
        (Method::GET, "/api/session", None),
        (Method::GET, "/api/users", None),
        (Method::GET, "/api/users/alice", None),
        (Method::POST, "/api/users/alice/follow", None),
        (Method::DELETE, "/api/users/alice/follow", None),
        (Method::GET, "/api/users/alice/posts", None),
        (Method::PUT, "/api/profile", Some(json!({"bio": "x"}))),
        (Method::GET, "/api/timeline", None),
        (Method::POST, "/api/posts", Some(json!({"text": "x"}))),
        (Method::DELETE, "/api/posts/alice/1", None),
        (Method::GET, "/api/posts/alice/1/thread", None),
        (Method::GET, "/api/posts/alice/1/likes", None),
        (Method::POST, "/api/posts/alice/1/like", None),
        (Method::DELETE, "/api/posts/alice/1/like", None),
        (Method::GET, "/api/topics", None),
        (Method::GET, "/api/topics/rust/history", None),
        (Method::POST, "/api/topics/rust/subscription", None),
        (Method::DELETE, "/api/topics/rust/subscription", None),
        (Method::POST, "/api/messages", Some(json!({"to": "bob", "text": "x"}))),
        (Method::GET, "/api/inbox", None),
        (Method::GET, "/api/conversations/bob", None),
        (Method::DELETE, "/api/account", Some(json!({"confirm": "alice"}))),
        (Method::GET, "/api/rooms", None),
        (Method::POST, "/api/rooms", Some(json!({"name": "lobby"}))),
        (Method::GET, "/api/rooms/lobby", None),
        (Method::DELETE, "/api/rooms/lobby", None),
        (Method::POST, "/api/rooms/lobby/membership", None),
        (Method::DELETE, "/api/rooms/lobby/membership", None),
        (Method::POST, "/api/rooms/lobby/messages", Some(json!({"text": "x"}))),
        (Method::GET, "/api/live", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_acts_only_for_the_session_and_refuses_bad_requests() {
    let (t, _alice, _bob, _carol) = start_with_three_users("gateway-api").await;
    let gateway = Gateway::start(&t, "gateway-1", &["--max-body", "2048", "--max-live-per-session", "3"])
        .await
        .expect("the gateway starts");

    // The page and the description are served, with a strict policy.
    let anonymous = Browser::new(&gateway);
    let page = anonymous.request(Method::GET, "/").send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.text().await.unwrap().contains("/app.js"));
    let doc = anonymous.ok(Method::GET, "/api/openapi.json", None).await;
    assert!(doc["paths"]["/api/posts"]["post"].is_object(), "{doc}");

    // Without a session every call is refused, in the API's JSON shape.
    for (method, path, body) in session_routes() {
        let (status, answer) = anonymous.call(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "unauthenticated", "{method} {path}");
    }
    let (status, answer) = anonymous.call(Method::GET, "/api/nothing-here", None).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // Logging in sets an HttpOnly, Secure, SameSite=Strict cookie.
    let mut alice = Browser::new(&gateway);
    let set_cookie = alice.enter("/api/login", "alice").await;
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let (status, wrong) = Browser::new(&gateway)
        .call(
            Method::POST,
            "/api/login",
            Some(json!({"username": "alice", "password": "wrong password"})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {wrong}");
    let (status, taken) = Browser::new(&gateway)
        .call(
            Method::POST,
            "/api/register",
            Some(json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!((status, taken["code"].as_str()), (StatusCode::CONFLICT, Some("exists")));
    // Signing up logs in (and names the new account).
    Browser::new(&gateway).enter("/api/register", "dave").await;

    // State-changing calls need the CSRF token, and the gateway's own origin.
    let mut forged = Browser {
        csrf: None,
        ..Browser::new(&gateway)
    };
    forged.cookie = alice.cookie.clone();
    let (status, answer) = forged
        .call(Method::POST, "/api/posts", Some(json!({"text": "forged"})))
        .await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf")));
    forged.csrf = Some("0".repeat(64));
    let (status, _) = forged
        .call(Method::POST, "/api/posts", Some(json!({"text": "forged"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let cross_site = alice
        .request(Method::POST, "/api/posts")
        .header("Origin", "https://evil.example")
        .json(&json!({"text": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    // A cookie of the right shape whose token no server issued gets nowhere.
    let mut impostor = Browser::new(&gateway);
    impostor.cookie = Some(format!("tinysns_session={}.{}", 3, "f".repeat(64)));
    let (status, _) = impostor.call(Method::GET, "/api/session", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bounded input: a body over --max-body, broken JSON, unknown fields, bad names.
    let (status, answer) = alice
        .call(Method::POST, "/api/posts", Some(json!({"text": "x".repeat(4000)})))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    let broken = alice
        .request(Method::POST, "/api/posts")
        .header("Content-Type", "application/json")
        .body("{\"text\":")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    for (method, path, body) in [
        (Method::POST, "/api/posts", json!({"text": "x", "author": "bob"})),
        (Method::POST, "/api/posts", json!({"text": ""})),
        (Method::POST, "/api/posts", json!({"text": "x", "id": "0"})),
        (Method::POST, "/api/posts", json!({"text": "x", "reply_to": "alice/99"})),
        (Method::POST, "/api/posts/alice/zero/like", json!(null)),
        (Method::POST, "/api/messages", json!({"to": "nobody_here", "text": "x"})),
        (Method::POST, "/api/rooms", json!({"name": "not a name"})),
        (Method::POST, "/api/rooms", json!({"name": "x", "creator": "bob"})),
        (Method::GET, "/api/rooms/nowhere", json!(null)),
        (
            Method::POST,
            "/api/rooms/nowhere/messages",
            json!({"text": "x", "id": "0"}),
        ),
        (Method::POST, "/api/rooms/nowhere/membership", json!(null)),
    ] {
        let (status, answer) = alice.call(method.clone(), path, Some(body)).await;
        assert!(status.is_client_error(), "{method} {path}: {status} {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    }

    // Bob follows alice and watches live; her post (a script, as text) reaches him.
    let mut bob = Browser::new(&gateway);
    bob.enter("/api/login", "bob").await;
    bob.ok(Method::POST, "/api/users/alice/follow", None).await;
    let mut bobs = bob.live(0).await;
    let live = bobs
        .next("live", Duration::from_secs(10))
        .await
        .expect("the stream goes live");
    let xss = "<script>alert(1)</script>";
    let posted = alice
        .ok(Method::POST, "/api/posts", Some(json!({"text": xss, "id": "12345"})))
        .await;
    assert_eq!(posted["name"], "alice/1");
    let again = alice
        .ok(Method::POST, "/api/posts", Some(json!({"text": xss, "id": "12345"})))
        .await;
    assert_eq!(again["name"], "alice/1", "a retried post is stored once");
    let shown = bobs
        .next("post", Duration::from_secs(15))
        .await
        .expect("the post arrives live");
    assert_eq!(
        (shown["post"]["name"].as_str(), shown["post"]["text"].as_str()),
        (Some("alice/1"), Some(xss))
    );
    assert!(shown["cursor"].as_u64() > live["cursor"].as_u64());

    // Another user's resources: bob cannot delete alice's post, nor read her messages.
    let (status, _) = bob.call(Method::DELETE, "/api/posts/alice/1", None).await;
    assert!(status.is_client_error());
    let thread = bob.ok(Method::GET, "/api/posts/alice/1/thread", None).await;
    assert_eq!(thread["post"]["text"], xss, "still there");
    alice
        .ok(
            Method::POST,
            "/api/messages",
            Some(json!({"to": "bob", "text": "psst"})),
        )
        .await;
    let mut carol = Browser::new(&gateway);
    carol.enter("/api/login", "carol").await;
    let snooping = carol.ok(Method::GET, "/api/conversations/alice", None).await;
    assert_eq!(
        snooping["messages"],
        json!([]),
        "carol sees none of alice's messages to bob"
    );
    let message = bobs
        .next("message", Duration::from_secs(15))
        .await
        .expect("the message arrives live");
    assert_eq!(
        (message["message"]["from"].as_str(), message["message"]["text"].as_str()),
        (Some("alice"), Some("psst"))
    );
    let unread = bobs
        .next("unread", Duration::from_secs(15))
        .await
        .expect("the unread count follows the message");
    assert_eq!(unread["count"], 1);
    let inbox = bob.ok(Method::GET, "/api/inbox", None).await;
    assert_eq!(inbox["unread"], 1);
    let read = bob.ok(Method::GET, "/api/conversations/alice", None).await;
    assert_eq!(read["messages"][0]["text"], "psst");
    assert_eq!(
        bob.ok(Method::GET, "/api/inbox", None).await["unread"],
        0,
        "reading clears the badge"
    );

    // Rooms: only the creator deletes one, a non-member reads no messages, and a member's
    // stream carries the room's messages.
    alice
        .ok(Method::POST, "/api/rooms", Some(json!({"name": "Hall"})))
        .await;
    let (status, _) = bob.call(Method::DELETE, "/api/rooms/hall", None).await;
    assert!(status.is_client_error(), "{status}");
    let said = alice
        .ok(
            Method::POST,
            "/api/rooms/hall/messages",
            Some(json!({"text": "first", "id": "7"})),
        )
        .await;
    assert_eq!(said["seq"], 1);
    let outside = carol.ok(Method::GET, "/api/rooms/hall", None).await;
    assert_eq!(
        (outside["member"].as_bool(), outside["messages"].clone()),
        (Some(false), json!([]))
    );
    bob.ok(Method::POST, "/api/rooms/hall/membership", None).await;
    let again = alice
        .ok(
            Method::POST,
            "/api/rooms/hall/messages",
            Some(json!({"text": "first", "id": "7"})),
        )
        .await;
    assert_eq!(again["seq"], 1, "a retried message is stored once");
    alice
        .ok(
            Method::POST,
            "/api/rooms/hall/messages",
            Some(json!({"text": "<b>second</b>"})),
        )
        .await;
    let message = bobs
        .next("room_message", Duration::from_secs(15))
        .await
        .expect("the room's message arrives live");
    assert_eq!(
        (
            message["message"]["room"].as_str(),
            message["message"]["seq"].as_u64(),
            message["message"]["text"].as_str()
        ),
        (Some("hall"), Some(2), Some("<b>second</b>"))
    );
    let inside = bob.ok(Method::GET, "/api/rooms/hall", None).await;
    assert_eq!(inside["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(inside["room"]["members"], 2);
    // A page showing the room says so on its socket, and hears who is present.
    bobs.say(r#"{"room": "hall", "active": true}"#).await;
    let presence = bobs
        .next("presence", Duration::from_secs(15))
        .await
        .expect("presence arrives on the socket");
    let here: Vec<(&str, bool)> = presence["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user"]["username"].as_str().unwrap(), m["present"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        (presence["room"].as_str(), here),
        (Some("hall"), vec![("alice", true), ("bob", true)])
    );
    bobs.say(r#"{"room": null}"#).await;
    // Anything else from a page ends its socket.
    let mut stray = bob.live(0).await;
    stray.say("hello").await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stray.socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket was not closed");

    // The same account in tsc and on the web: a post made in either shows live in the other
    // (tsc does not show back what was typed in it, as the classic client).
    let mut alices = alice.live(0).await;
    alices
        .next("live", Duration::from_secs(10))
        .await
        .expect("alice's stream goes live");
    // Bob's like of her post reaches her page live, named by its number and the liker.
    bob.ok(Method::POST, "/api/posts/alice/1/like", None).await;
    let like = alices
        .next("like", Duration::from_secs(15))
        .await
        .expect("the like arrives live");
    assert_eq!(
        (like["number"].as_u64(), like["by"].as_str(), like["liked"].as_bool()),
        (Some(1), Some("bob"), Some(true))
    );
    let mut tsc = tsc_registered(&t, "alice");
    tsc.send("TIMELINE\n");
    tsc.send("from tsc\n");
    let mine = alices
        .next("post", Duration::from_secs(15))
        .await
        .expect("her post from tsc arrives on her page");
    assert_eq!(
        (mine["post"]["author"].as_str(), mine["post"]["text"].as_str()),
        (Some("alice"), Some("from tsc"))
    );
    alice
        .ok(Method::POST, "/api/posts", Some(json!({"text": "from the web"})))
        .await;
    tsc.wait_for(">> from the web", 1, Duration::from_secs(15))
        .expect("her post from the web shows in tsc's timeline");
    let (_, output) = tsc.finish(Duration::from_secs(10));
    assert!(
        !output.contains(">> from tsc"),
        "the post typed in tsc is not shown back: {output}"
    );
    drop(alices);

    // A session holds at most --max-live-per-session live streams; a closed one frees its place.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(carol.live(0).await);
    }
    assert_eq!(
        carol.try_live(0).await.err(),
        Some(Some(429)),
        "a fourth stream is refused"
    );
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while carol.try_live(0).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(open);

    // The session's rate limit: a burst far above it is cut off.
    let calls = (0..200).map(|_| carol.call(Method::GET, "/api/session", None));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(limited >= 50, "{limited} of 200 limited");
    let metrics = tinysns_stack::scrape::get(gateway.metrics_port, "/metrics")
        .await
        .unwrap();
    assert!(metrics.contains("tinysns_gateway_rate_limited_total"), "{metrics}");

    // Behind a trusted proxy the login limit counts the client it forwards for, not the proxy;
    // a header from anyone else is not believed.
    let proxied = Gateway::start(
        &t,
        "gateway-proxied",
        &[
            "--trusted-proxies",
            "127.0.0.1",
            "--session-rate",
            "1",
            "--session-burst",
            "2",
        ],
    )
    .await
    .expect("the gateway starts");
    let attempt = |client: &'static str| {
        let request = reqwest::Client::new()
            .post(format!("{}/api/login", proxied.url))
            .header("X-Forwarded-For", client)
            .json(&json!({"username": "alice", "password": "wrong password"}));
        async move { request.send().await.unwrap().status() }
    };
    let burst = futures_util::future::join_all((0..5).map(|_| attempt("203.0.113.1"))).await;
    let limited = burst.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(limited >= 2, "{burst:?}");
    let other = attempt("203.0.113.2").await;
    assert!(
        other.is_client_error() && other != StatusCode::TOO_MANY_REQUESTS,
        "another client: {other}"
    );
    let direct = Gateway::start(&t, "gateway-direct", &["--session-rate", "1", "--session-burst", "2"])
        .await
        .expect("the gateway starts");
    let spoofed = |client: &'static str| {
        let request = reqwest::Client::new()
            .post(format!("{}/api/login", direct.url))
            .header("X-Forwarded-For", client)
            .json(&json!({"username": "alice", "password": "wrong password"}));
        async move { request.send().await.unwrap().status() }
    };
    let burst = futures_util::future::join_all(
        [
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
            "198.51.100.4",
            "198.51.100.5",
        ]
        .map(spoofed),
    )
    .await;
    assert!(
        burst.contains(&StatusCode::TOO_MANY_REQUESTS),
        "without trusted proxies, a header does not make new clients: {burst:?}"
    );

    // Logging out ends the session everywhere: the old cookie is refused.
    let old = bob.cookie.clone();
    let logout = bob.request(Method::POST, "/api/logout").send().await.unwrap();
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    bob.cookie = old;
    let (status, _) = bob.call(Method::GET, "/api/session", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_resumes_across_a_failover_and_on_another_gateway() {
    let (mut t, _alice, _bob, _carol) = start_with_three_users("gateway-live").await;
    let first = Gateway::start(&t, "gateway-1", &[]).await.expect("the gateway starts");
    let second = Gateway::start(&t, "gateway-2", &[])
        .await
        .expect("a second gateway starts");
    let mut alice = Browser::new(&first);
    alice.enter("/api/login", "alice").await;
    let mut bob = Browser::new(&first);
    bob.enter("/api/login", "bob").await;
    bob.ok(Method::POST, "/api/users/alice/follow", None).await;
    let mut bobs = bob.live(0).await;
    bobs.next("live", Duration::from_secs(10))
        .await
        .expect("the stream goes live");
    let post = |n: u32| json!({ "text": format!("post {n}") });
    alice.ok(Method::POST, "/api/posts", Some(post(1))).await;
    assert!(bobs.next("post", Duration::from_secs(15)).await.is_some());

    // Bob's cluster (1) loses its master while alice goes on posting.
    let master = t.master_server(1).await.expect("cluster 1 has a master");
    t.server(1, master).kill();
    for n in 2..=4 {
        alice.ok(Method::POST, "/api/posts", Some(post(n))).await;
    }
    let events = bobs.drain(Duration::from_secs(20)).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"reconnecting"), "{kinds:?}");
    assert!(
        events.iter().any(|e| e["kind"] == "live" && e["resumed"] == true),
        "{kinds:?}"
    );
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "post")
        .filter_map(|e| e["post"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["post 2", "post 3", "post 4"], "no gap, no repeat");
    let cursor = events.iter().filter_map(|e| e["cursor"].as_u64()).max().unwrap();

    // The page loses its socket and reconnects to the other gateway from its cursor.
    drop(bobs);
    alice.ok(Method::POST, "/api/posts", Some(post(5))).await;
    let mut elsewhere = Browser::new(&second);
    elsewhere.cookie = bob.cookie.clone();
    let mut resumed = elsewhere.live(cursor).await;
    let events = resumed.drain(Duration::from_secs(5)).await;
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "post")
        .filter_map(|e| e["post"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["post 5"], "only what came after the cursor");
}
