//! A small OpenID Connect issuer on loopback: discovery, a JWKS of its own ES256 keys (which it
//! can rotate), an authorization endpoint that signs in whoever the test says, and a token
//! endpoint that checks the code and its PKCE verifier. It also signs tokens for the test to
//! send as bearer tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The client id and secret the issuer knows signoff by.
pub const CLIENT_ID: &str = "signoff-test";
pub const CLIENT_SECRET: &str = "oidc-test-secret";

/// One signing key: its id, the private key (PKCS#8 PEM) and its public point.
struct Key {
    kid: String,
    pem: String,
    x: String,
    y: String,
}

impl Key {
    fn generate(n: usize) -> Key {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        Key { kid: format!("key-{n}"), pem: pair.serialize_pem(), x: URL_SAFE_NO_PAD.encode(&raw[1..33]), y: URL_SAFE_NO_PAD.encode(&raw[33..65]) }
    }
}

/// A code handed out by the authorization endpoint, waiting for the token endpoint.
struct Pending {
    claims: Value,
    challenge: String,
    redirect_uri: String,
}

pub struct Issuer {
    pub url: String,
    keys: Mutex<Vec<Key>>,
    /// The claims of whoever signs in next at the authorization endpoint.
    pub next_login: Mutex<Value>,
    codes: Mutex<HashMap<String, Pending>>,
    /// How many times the JWKS was fetched.
    pub jwks_fetches: Mutex<u32>,
}

impl Issuer {
    /// A token signed with the current key, with `claims` (the test sets iss, aud, exp…).
    pub fn sign(&self, claims: &Value) -> String {
        let keys = self.keys.lock().unwrap();
        let key = keys.last().unwrap();
        sign_es256(&key.kid, claims, &key.pem)
    }

    /// Claims for `user` from this issuer to `CLIENT_ID`, valid for an hour from `now` (seconds).
    pub fn claims(&self, user: &str, now: i64) -> Value {
        json!({"iss": self.url, "aud": CLIENT_ID, "sub": format!("sub-{user}"), "preferred_username": user, "iat": now, "exp": now + 3600})
    }

    /// A new signing key replaces the current one in the JWKS.
    pub fn rotate(&self) {
        let mut keys = self.keys.lock().unwrap();
        let n = keys.len() + 1;
        keys.clear();
        keys.push(Key::generate(n + 100));
    }
}

fn sign_es256(kid: &str, claims: &Value, pem: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()).unwrap()
}

pub async fn start_issuer() -> Arc<Issuer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = Arc::new(Issuer {
        url,
        keys: Mutex::new(vec![Key::generate(1)]),
        next_login: Mutex::new(Value::Null),
        codes: Mutex::new(HashMap::new()),
        jwks_fetches: Mutex::new(0),
    });
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", axum::routing::get(discovery))
        .route("/jwks", axum::routing::get(jwks))
        .route("/authorize", axum::routing::get(authorize))
        .route("/token", axum::routing::post(token))
        .with_state(issuer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

async fn discovery(State(i): State<Arc<Issuer>>) -> Json<Value> {
    Json(json!({
        "issuer": i.url,
        "jwks_uri": format!("{}/jwks", i.url),
        "authorization_endpoint": format!("{}/authorize", i.url),
        "token_endpoint": format!("{}/token", i.url),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn jwks(State(i): State<Arc<Issuer>>) -> Json<Value> {
    *i.jwks_fetches.lock().unwrap() += 1;
    let keys: Vec<Value> = i.keys.lock().unwrap().iter().map(|k| json!({"kty": "EC", "crv": "P-256", "x": k.x, "y": k.y, "kid": k.kid, "alg": "ES256", "use": "sig"})).collect();
    Json(json!({ "keys": keys }))
}

async fn authorize(State(i): State<Arc<Issuer>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("client_id") != CLIENT_ID || get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let mut claims = i.next_login.lock().unwrap().clone();
    if claims.is_null() {
        return (StatusCode::FORBIDDEN, "nobody signs in").into_response();
    }
    claims["nonce"] = json!(get("nonce"));
    let code = format!("code-{}", i.codes.lock().unwrap().len() + 1);
    i.codes.lock().unwrap().insert(code.clone(), Pending { claims, challenge: get("code_challenge"), redirect_uri: get("redirect_uri") });
    let sep = if get("redirect_uri").contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{}{sep}code={code}&state={}", get("redirect_uri"), get("state"))).into_response()
}

async fn token(State(i): State<Arc<Issuer>>, body: String) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("grant_type") != "authorization_code" || get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let Some(pending) = i.codes.lock().unwrap().remove(&get("code")) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes()));
    if challenge != pending.challenge || get("redirect_uri") != pending.redirect_uri {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant", "error_description": "PKCE or redirect_uri"}))).into_response();
    }
    let id_token = i.sign(&pending.claims);
    Json(json!({"access_token": "opaque", "token_type": "Bearer", "expires_in": 3600, "id_token": id_token})).into_response()
}
