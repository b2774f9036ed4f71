// tinysns web UI. Plain JavaScript, no build step. Every piece of text from the servers is
// put on the page with text nodes (never parsed as HTML), so a post "<script>" is shown as
// written. One WebSocket per page carries live events; when it drops (a failover, or the
// gateway restarting) the page shows "reconnecting" and resumes from the last cursor it saw.
"use strict";

const MAX_POST_BYTES = 4096;
const encoder = new TextEncoder();

const state = {
  me: null, // { user, username, csrf }
  cursor: 0, // the live stream's position: a new socket resumes after it
  seenPosts: new Set(), // post names shown in the home timeline
  homePosts: [], // newest first
  unread: 0,
  socket: null,
  retry: 0,
  route: "",
  room: null, // the room page shown: { name, seen: Set of message numbers }
  saidActive: 0, // when the page last told the gateway its user did something in the room
};

// ---- DOM helpers (text only) -------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === "class") {
      node.className = value;
    } else if (value !== false && value !== null && value !== undefined) {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

function $(id) {
  return document.getElementById(id);
}

// Shows a page; `ready` marks it loaded for the route (tests wait for data-route).
function show(view, ready = true) {
  const root = $("view");
  root.replaceChildren(view);
  root.hidden = false;
  root.dataset.route = ready ? location.hash : "";
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text || "";
  status.className = "status " + (kind || "");
  status.hidden = !text;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

// ---- the HTTP API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || "HTTP " + status);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.me) headers["X-CSRF-Token"] = state.me.csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && state.me) loggedOut();
    throw new ApiError(response.status, data);
  }
  return data;
}

function enc(part) {
  return encodeURIComponent(part);
}

function postPath(name) {
  const [author, number] = name.split("/");
  return "/api/posts/" + enc(author) + "/" + enc(number);
}

function failed(error, where) {
  const text = error instanceof ApiError ? error.message : "the gateway cannot be reached";
  (where || setStatus)(text, "error");
}

// ---- session -------------------------------------------------------------------------------

async function start() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    enter("/api/login");
  });
  $("register-button").addEventListener("click", () => enter("/api/register"));
  $("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  try {
    state.me = await api("GET", "/api/session");
    loggedIn();
  } catch (_) {
    loggedOut();
  }
}

async function enter(path) {
  const error = $("login-error");
  error.textContent = "";
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!$("login-form").reportValidity()) return;
  try {
    state.me = await api("POST", path, { username, password });
    $("password").value = "";
    loggedIn();
  } catch (e) {
    error.textContent = e.message;
  }
}

function loggedIn() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("me-link").href = "#/users/" + enc(state.me.username);
  connect();
  refreshUnread();
  if (!location.hash || location.hash === "#/") location.hash = "#/home";
  route();
}

function loggedOut() {
  state.me = null;
  if (state.socket) state.socket.close();
  state.socket = null;
  state.cursor = 0;
  state.seenPosts.clear();
  state.homePosts = [];
  $("nav").hidden = true;
  $("view").hidden = true;
  $("login").hidden = false;
  setStatus("");
  $("username").focus();
}

async function logout() {
  try {
    await api("POST", "/api/logout");
  } catch (_) {
    // Logged out here either way.
  }
  loggedOut();
}

// ---- the live stream -----------------------------------------------------------------------

function connect() {
  if (!state.me) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + "/api/live?after=" + state.cursor);
  state.socket = socket;
  socket.addEventListener("message", (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    received(event);
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket || !state.me) return;
    setStatus("Reconnecting…", "warn");
    state.retry = Math.min(state.retry + 1, 6);
    const pause = Math.min(250 * 2 ** state.retry, 8000) * (0.5 + Math.random() / 2);
    setTimeout(connect, pause);
  });
}

function received(event) {
  if (typeof event.cursor === "number" && event.cursor > state.cursor) state.cursor = event.cursor;
  switch (event.kind) {
    case "live":
      state.retry = 0;
      if (state.room) watchRoom(state.room.name, true);
      setStatus(event.resumed ? "Connected again; nothing was missed." : "", "ok");
      if (event.resumed) setTimeout(() => setStatus(""), 3000);
      break;
    case "reconnecting":
      setStatus("Reconnecting…", "warn");
      break;
    case "post":
      addHomePost(event.post);
      break;
    case "message":
      // (The unread count follows as its own event.)
      if (state.route === "conversation/" + event.message.from || state.route === "conversation/" + event.message.to) {
        route();
      }
      break;
    case "topic_post":
      if (event.post.post) addHomePost(event.post.post, "#" + event.post.topic);
      break;
    case "unread":
      state.unread = event.count;
      showUnread();
      break;
    case "presence":
      if (state.room && state.room.name === event.room) showPresence(event.members);
      break;
    case "like":
      likedLive(event);
      break;
    case "room_message":
      if (state.room && state.room.name === event.message.room) addRoomMessage(event.message);
      break;
    case "room_closed":
      if (state.room && state.room.name === event.room) roomPage(event.room);
      break;
    case "closed":
      setStatus("The live stream stopped: " + event.error, "error");
      break;
  }
}

// Someone liked one of my posts (or stopped): its count changes wherever it is shown.
function likedLive(event) {
  const name = state.me.username + "/" + event.number;
  const buttons = [...document.querySelectorAll("article[data-name='" + CSS.escape(name) + "'] button.like")];
  const posts = new Set(state.homePosts.filter((p) => p.name === name));
  for (const button of buttons) if (button.post) posts.add(button.post);
  for (const post of posts) post.likes = Math.max(0, post.likes + (event.liked ? 1 : -1));
  for (const button of buttons) {
    if (button.post) button.textContent = (button.post.liked ? "♥ " : "♡ ") + button.post.likes;
  }
  if (event.liked) {
    setStatus(event.by + " liked " + name, "ok");
    setTimeout(() => setStatus(""), 3000);
  }
}

function addHomePost(post, via) {
  if (state.seenPosts.has(post.name)) return;
  state.seenPosts.add(post.name);
  post.via = via;
  state.homePosts.unshift(post);
  state.homePosts.sort((a, b) => b.timestamp_ms - a.timestamp_ms);
  if (state.route === "home") {
    const list = $("home-posts");
    if (list) list.replaceChildren(...state.homePosts.map(postItem));
  }
}

async function refreshUnread() {
  try {
    const inbox = await api("GET", "/api/inbox");
    state.unread = inbox.unread;
    showUnread();
  } catch (_) {
    // Shown on the next try.
  }
}

function showUnread() {
  const badge = $("unread");
  badge.textContent = String(state.unread);
  badge.hidden = state.unread === 0;
}

// ---- pages ---------------------------------------------------------------------------------

function route() {
  if (!state.me) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [page, a, b] = parts;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", link.dataset.page === page);
  }
  leaveRoomPage();
  switch (page) {
    case "rooms":
      state.route = a ? "room/" + a : "rooms";
      return a ? roomPage(a) : roomsPage();
    case "users":
      state.route = "users/" + a;
      return profilePage(a);
    case "posts":
      state.route = "posts/" + a + "/" + b;
      return threadPage(a + "/" + b);
    case "topics":
      state.route = a ? "topic/" + a : "topics";
      return a ? topicPage(a) : topicsPage();
    case "messages":
      state.route = a ? "conversation/" + a : "messages";
      return a ? conversationPage(a) : inboxPage();
    case "people":
      state.route = "people";
      return peoplePage();
    default:
      state.route = "home";
      return homePage();
  }
}

function loading() {
  show(el("p", { class: "muted" }, "Loading…"), false);
}

function postItem(post) {
  const likeButton = el(
    "button",
    {
      type: "button",
      class: "like" + (post.liked ? " on" : ""),
      "aria-pressed": post.liked ? "true" : "false",
      on: { click: () => toggleLike(post, likeButton) },
    },
    (post.liked ? "♥ " : "♡ ") + post.likes,
  );
  likeButton.post = post; // (a live like changes its count: likedLive)
  return el(
    "article",
    { class: "post", "data-name": post.name },
    el(
      "header",
      {},
      el("a", { href: "#/users/" + enc(post.author), class: "author" }, post.author),
      " ",
      el("a", { href: "#/posts/" + post.name, class: "muted" }, post.name + " · " + when(post.timestamp_ms)),
      post.via ? el("span", { class: "muted" }, " · " + post.via) : null,
    ),
    post.reply_to
      ? el("p", { class: "muted" }, "reply to ", el("a", { href: "#/posts/" + post.reply_to }, post.reply_to))
      : post.is_reply
        ? el("p", { class: "muted" }, el("a", { href: "#/posts/" + post.name }, "a reply"))
        : null,
    el("p", { class: "text" }, post.text),
    el(
      "footer",
      {},
      likeButton,
      " ",
      el("a", { href: "#/posts/" + post.name }, post.replies + (post.replies === 1 ? " reply" : " replies")),
    ),
  );
}

async function toggleLike(post, button) {
  button.disabled = true;
  try {
    await api(post.liked ? "DELETE" : "POST", postPath(post.name) + "/like");
    post.liked = !post.liked;
    post.likes += post.liked ? 1 : -1;
    button.textContent = (post.liked ? "♥ " : "♡ ") + post.likes;
    button.classList.toggle("on", post.liked);
    button.setAttribute("aria-pressed", post.liked ? "true" : "false");
  } catch (e) {
    failed(e);
  } finally {
    button.disabled = false;
  }
}

function composer(placeholder, send) {
  const text = el("textarea", { id: "compose-text", placeholder, rows: 3, "aria-label": placeholder });
  const counter = el("span", { id: "compose-counter", class: "muted" }, "0 / " + MAX_POST_BYTES);
  const button = el("button", { id: "compose-send", type: "submit" }, "Post");
  const error = el("p", { class: "error", role: "alert" });
  const update = () => {
    const used = encoder.encode(text.value).length;
    counter.textContent = used + " / " + MAX_POST_BYTES;
    counter.classList.toggle("over", used > MAX_POST_BYTES);
    button.disabled = used === 0 || used > MAX_POST_BYTES;
  };
  text.addEventListener("input", update);
  update();
  // An id per post, kept while it is retried, so that a repeated request stores it once.
  let id = null;
  return el(
    "form",
    {
      class: "compose",
      on: {
        submit: async (e) => {
          e.preventDefault();
          id = id || String((crypto.getRandomValues(new BigUint64Array(1))[0] >> 1n) || 1n);
          button.disabled = true;
          error.textContent = "";
          try {
            await send(text.value, id);
            text.value = "";
            id = null;
          } catch (err) {
            error.textContent = err.message;
          }
          update();
        },
      },
    },
    text,
    el("div", { class: "row" }, counter, button),
    error,
  );
}

async function homePage() {
  const list = el("div", { id: "home-posts" }, state.homePosts.map(postItem));
  show(
    el(
      "div",
      {},
      el("h1", {}, "Home"),
      composer("What's happening?", async (text, id) => {
        const published = await api("POST", "/api/posts", { text, id });
        // Your own posts show on your home page too (the stream brings those you follow).
        addHomePost({
          name: published.name,
          author: state.me.username,
          number: published.number,
          text,
          timestamp_ms: Date.now(),
          likes: 0,
          liked: false,
          replies: 0,
          is_reply: false,
          reply_to: null,
          seq: 0,
        });
        setStatus("Posted " + published.name, "ok");
        setTimeout(() => setStatus(""), 2000);
      }),
      list,
    ),
  );
  if (state.homePosts.length === 0) {
    try {
      const page = await api("GET", "/api/timeline");
      for (const post of page.posts.reverse()) addHomePost(post);
    } catch (e) {
      failed(e);
    }
  }
}

async function profilePage(name) {
  loading();
  try {
    const [profile, posts] = await Promise.all([
      api("GET", "/api/users/" + enc(name)),
      api("GET", "/api/users/" + enc(name) + "/posts"),
    ]);
    const mine = profile.username === state.me.username;
    const view = el(
      "div",
      {},
      el("h1", {}, profile.display_name || profile.username),
      el("p", { class: "muted" }, "@" + profile.username),
      profile.bio ? el("p", {}, profile.bio) : null,
      el(
        "p",
        { id: "profile-counts" },
        profile.followers + " followers · " + profile.following + " following · " + profile.posts + " posts",
      ),
      mine ? profileEditor(profile) : followButton(profile.username),
      mine ? null : el("a", { href: "#/messages/" + enc(profile.username) }, "Message"),
      el("h2", {}, "Posts"),
      el("div", { id: "profile-posts" }, posts.posts.map(postItem)),
    );
    show(view);
  } catch (e) {
    failed(e, (text) => show(el("p", { class: "error" }, text)));
  }
}

function followButton(username) {
  const follow = el("button", { id: "follow", type: "button" }, "Follow");
  const unfollow = el("button", { id: "unfollow", type: "button" }, "Unfollow");
  const act = (method) => async () => {
    try {
      await api(method, "/api/users/" + enc(username) + "/follow");
      profilePage(username);
    } catch (e) {
      failed(e);
    }
  };
  follow.addEventListener("click", act("POST"));
  unfollow.addEventListener("click", act("DELETE"));
  return el("div", { class: "row" }, follow, unfollow);
}

function profileEditor(profile) {
  const name = el("input", { id: "display-name", value: profile.display_name, maxlength: 64, "aria-label": "Display name" });
  const bio = el("textarea", { id: "bio", rows: 2, maxlength: 280, "aria-label": "Bio" });
  bio.value = profile.bio;
  return el(
    "form",
    {
      on: {
        submit: async (e) => {
          e.preventDefault();
          try {
            await api("PUT", "/api/profile", { display_name: name.value, bio: bio.value });
            profilePage(profile.username);
          } catch (err) {
            failed(err);
          }
        },
      },
    },
    el("label", {}, "Display name ", name),
    el("label", {}, "Bio ", bio),
    el("button", { type: "submit" }, "Save"),
  );
}

async function threadPage(name) {
  loading();
  try {
    const [thread, likes] = await Promise.all([api("GET", postPath(name) + "/thread"), api("GET", postPath(name) + "/likes")]);
    const replies = el("div", { id: "replies" }, thread.replies.map(postItem));
    const more = moreButton(thread.next, async (next) => {
      const page = await api("GET", postPath(name) + "/thread?page=" + enc(next));
      replies.append(...page.replies.map(postItem));
      return page.next;
    });
    const mine = thread.post && thread.post.author === state.me.username;
    show(
      el(
        "div",
        {},
        thread.post ? postItem(thread.post) : null,
        el("p", { id: "likers", class: "muted" }, likes.count + " likes" + (likes.users.length ? ": " + likes.users.map((u) => u.username).join(", ") : "")),
        mine ? el("button", { id: "delete-post", type: "button", on: { click: () => deletePost(name) } }, "Delete") : null,
        el("h2", {}, "Replies"),
        composer("Reply…", async (text, id) => {
          await api("POST", "/api/posts", { text, reply_to: name, id });
          threadPage(name);
        }),
        replies,
        more,
      ),
    );
  } catch (e) {
    failed(e, (text) => show(el("p", { class: "error" }, text)));
  }
}

async function deletePost(name) {
  if (!confirm("Delete " + name + "?")) return;
  try {
    await api("DELETE", postPath(name));
    state.homePosts = state.homePosts.filter((p) => p.name !== name);
    location.hash = "#/home";
  } catch (e) {
    failed(e);
  }
}

function moreButton(next, load) {
  const button = el("button", { type: "button", class: "more" }, "More");
  let cursor = next;
  button.hidden = !cursor;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      cursor = await load(cursor);
    } catch (e) {
      failed(e);
    }
    button.disabled = false;
    button.hidden = !cursor;
  });
  return button;
}

async function topicsPage() {
  loading();
  try {
    const [all, active] = await Promise.all([api("GET", "/api/topics"), api("GET", "/api/topics?active=true")]);
    const row = (t) =>
      el("li", {}, el("a", { href: "#/topics/" + enc(t.topic) }, "#" + t.topic), " ", el("span", { class: "muted" }, t.count + " posts" + (t.subscribed ? " · subscribed" : "")));
    show(
      el(
        "div",
        {},
        el("h1", {}, "Topics"),
        el("h2", {}, "Active in the last hour"),
        el("ul", {}, active.topics.map(row)),
        el("h2", {}, "All topics"),
        el("ul", { id: "topics" }, all.topics.map(row)),
      ),
    );
  } catch (e) {
    failed(e);
  }
}

async function topicPage(topic) {
  loading();
  try {
    const first = await api("GET", "/api/topics/" + enc(topic) + "/history");
    const list = el("div", { id: "history" });
    const append = (page) => list.append(...page.posts.filter((p) => p.post).map((p) => postItem(Object.assign(p.post, { via: "#" + p.seq }))));
    append(first);
    const subscribe = el("button", { id: "subscribe", type: "button" }, first.subscribed ? "Unsubscribe" : "Subscribe");
    subscribe.addEventListener("click", async () => {
      try {
        await api(first.subscribed ? "DELETE" : "POST", "/api/topics/" + enc(topic) + "/subscription");
        topicPage(topic);
      } catch (e) {
        failed(e);
      }
    });
    // Infinite paging: older pages load as the end of the list comes into view.
    let next = first.next;
    const sentinel = el("p", { class: "muted" }, next ? "Loading older posts…" : "The beginning of #" + topic);
    const observer = new IntersectionObserver(async (entries) => {
      if (!entries.some((e) => e.isIntersecting) || !next) return;
      const from = next;
      next = null;
      try {
        const page = await api("GET", "/api/topics/" + enc(topic) + "/history?from=" + from);
        append(page);
        next = page.next;
      } catch (e) {
        failed(e);
      }
      if (!next) {
        sentinel.textContent = "The beginning of #" + topic;
        observer.disconnect();
      }
    });
    show(el("div", {}, el("h1", {}, "#" + topic), el("p", { class: "muted" }, first.count + " posts"), subscribe, list, sentinel));
    observer.observe(sentinel);
  } catch (e) {
    failed(e, (text) => show(el("p", { class: "error" }, text)));
  }
}

async function inboxPage() {
  loading();
  try {
    const inbox = await api("GET", "/api/inbox");
    state.unread = inbox.unread;
    showUnread();
    const to = el("input", { id: "dm-to", placeholder: "username", "aria-label": "Send a message to" });
    show(
      el(
        "div",
        {},
        el("h1", {}, "Messages"),
        el(
          "form",
          { class: "row", on: { submit: (e) => { e.preventDefault(); if (to.value.trim()) location.hash = "#/messages/" + enc(to.value.trim()); } } },
          to,
          el("button", { type: "submit" }, "Open"),
        ),
        el(
          "ul",
          { id: "conversations" },
          inbox.conversations.map((c) =>
            el("li", {}, el("a", { href: "#/messages/" + enc(c.with) }, c.with), " ", c.unread ? el("span", { class: "badge" }, String(c.unread)) : null, " ", el("span", { class: "muted" }, when(c.last_ms))),
          ),
        ),
      ),
    );
  } catch (e) {
    failed(e);
  }
}

async function conversationPage(user) {
  try {
    const page = await api("GET", "/api/conversations/" + enc(user));
    refreshUnread();
    const text = el("input", { id: "dm-text", placeholder: "Message", "aria-label": "Message", maxlength: 4096 });
    const error = el("p", { class: "error", role: "alert" });
    show(
      el(
        "div",
        {},
        el("h1", {}, "Messages with " + user),
        el(
          "form",
          {
            class: "row",
            on: {
              submit: async (e) => {
                e.preventDefault();
                try {
                  await api("POST", "/api/messages", { to: user, text: text.value });
                  text.value = "";
                  conversationPage(user);
                } catch (err) {
                  error.textContent = err.message;
                }
              },
            },
          },
          text,
          el("button", { id: "dm-send", type: "submit" }, "Send"),
        ),
        error,
        el(
          "ol",
          { id: "messages", class: "messages" },
          page.messages.map((m) => el("li", { class: m.from === state.me.username ? "mine" : "theirs" }, el("span", { class: "muted" }, m.from + " · " + when(m.timestamp_ms)), el("p", {}, m.text))),
        ),
      ),
    );
    text.focus();
  } catch (e) {
    failed(e, (t) => show(el("p", { class: "error" }, t)));
  }
}

async function peoplePage() {
  loading();
  try {
    const list = await api("GET", "/api/users");
    show(
      el(
        "div",
        {},
        el("h1", {}, "People"),
        el("ul", { id: "people" }, list.users.map((u) => el("li", {}, el("a", { href: "#/users/" + enc(u.username) }, u.username)))),
      ),
    );
  } catch (e) {
    failed(e);
  }
}

// ---- rooms ---------------------------------------------------------------------------------

// How often, at most, the page tells the gateway its user did something in the room.
const ACTIVE_EVERY_MS = 5000;

// Tells the gateway which room the page shows (null: none), and whether its user just did
// something there (which marks them present). The gateway answers with `presence` events.
function watchRoom(name, active) {
  if (active) state.saidActive = Date.now();
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ room: name, active }));
  }
}

function roomActivity() {
  if (state.room && !document.hidden && Date.now() - state.saidActive > ACTIVE_EVERY_MS) watchRoom(state.room.name, true);
}
for (const event of ["keydown", "pointerdown", "focus", "visibilitychange"]) window.addEventListener(event, roomActivity);

function leaveRoomPage() {
  if (state.room) watchRoom(null, false);
  state.room = null;
}

function roomLink(room) {
  return el(
    "li",
    {},
    el("a", { href: "#/rooms/" + enc(room.name) }, "#" + room.name),
    " ",
    el("span", { class: "muted" }, room.members + " members · by " + room.creator + (room.state === "open" ? "" : " · " + room.state)),
  );
}

async function roomsPage() {
  loading();
  try {
    const rooms = await api("GET", "/api/rooms");
    const name = el("input", { id: "room-name", placeholder: "room name", "aria-label": "New room's name", maxlength: 32 });
    const error = el("p", { class: "error", role: "alert" });
    const create = async (e) => {
      e.preventDefault();
      try {
        await api("POST", "/api/rooms", { name: name.value });
        location.hash = "#/rooms/" + enc(name.value.trim().replace(/^#/, "").toLowerCase());
      } catch (err) {
        error.textContent = err.message;
      }
    };
    show(
      el(
        "div",
        {},
        el("h1", {}, "Rooms"),
        el("form", { class: "row", on: { submit: create } }, name, el("button", { id: "room-create", type: "submit" }, "Create")),
        error,
        el("h2", {}, "Your rooms"),
        el("ul", { id: "my-rooms" }, rooms.mine.map(roomLink)),
        el("h2", {}, "Open rooms"),
        el("ul", { id: "open-rooms" }, rooms.open.map(roomLink)),
      ),
    );
  } catch (e) {
    failed(e);
  }
}

function roomMessageItem(m) {
  return el(
    "li",
    { "data-seq": m.seq, class: m.from === state.me.username ? "mine" : "theirs" },
    el("span", { class: "muted" }, "#" + m.seq + " " + m.from + " · " + when(m.timestamp_ms)),
    el("p", {}, m.text),
  );
}

// A live message of the room shown: once, in number order.
function addRoomMessage(m) {
  const list = $("room-messages");
  if (!list || state.room.seen.has(m.seq)) return;
  state.room.seen.add(m.seq);
  const later = [...list.children].find((li) => Number(li.dataset.seq) > m.seq);
  list.insertBefore(roomMessageItem(m), later || null);
}

function memberItem(m) {
  return el("li", { class: m.present ? "present" : "away" }, m.user.username + (m.present ? " · here" : " · away"));
}

function showPresence(members) {
  const list = $("room-members");
  if (list) list.replaceChildren(...members.map(memberItem));
}

async function roomAction(method, path, name) {
  try {
    await api(method, path);
    roomPage(name);
  } catch (err) {
    setStatus(err.message, "error");
  }
}

async function roomPage(name) {
  try {
    const room = await api("GET", "/api/rooms/" + enc(name) + "?limit=100");
    leaveRoomPage();
    state.room = { name, seen: new Set(room.messages.map((m) => m.seq)) };
    const open = room.room.state === "open";
    const mine = room.room.creator === state.me.username;
    const path = "/api/rooms/" + enc(name);
    const actions = el(
      "div",
      { class: "row" },
      open && !room.member ? el("button", { id: "room-join", type: "button", on: { click: () => roomAction("POST", path + "/membership", name) } }, "Join") : null,
      open && room.member && !mine ? el("button", { id: "room-leave", type: "button", on: { click: () => roomAction("DELETE", path + "/membership", name) } }, "Leave") : null,
      open && mine ? el("button", { id: "room-delete", type: "button", on: { click: () => confirm("Delete #" + name + " for everyone?") && roomAction("DELETE", path, name) } }, "Delete room") : null,
    );
    const talk = open && room.member ? composer("Say something in #" + name, async (text, id) => {
      const said = await api("POST", path + "/messages", { text, id });
      addRoomMessage({ room: name, seq: said.seq, from: state.me.username, text, timestamp_ms: Date.now() });
    }) : null;
    show(
      el(
        "div",
        { class: "room" },
        el("h1", {}, "#" + name),
        el("p", { id: "room-state", class: "muted" }, open ? room.room.members + " members · created by " + room.room.creator : "This room is " + room.room.state + "."),
        actions,
        room.member ? el("h2", {}, "Members") : null,
        room.member ? el("ul", { id: "room-members", class: "members" }, room.members.map(memberItem)) : null,
        room.member ? el("ol", { id: "room-messages", class: "messages" }, room.messages.slice().reverse().map(roomMessageItem)) : null,
        talk,
      ),
    );
    if (open && room.member) watchRoom(name, true);
  } catch (e) {
    failed(e, (t) => show(el("p", { class: "error" }, t)));
  }
}

start();
