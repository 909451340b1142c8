//! Single sign-on with an OpenID Connect issuer: its discovery document and signing keys
//! (JWKS, cached, fetched again when a token names a key not yet seen, so a rotation is
//! picked up at once), JWT bearer tokens checked for issuer, audience, expiry and signature
//! with a bounded clock skew, a claim naming the directory user (and optionally one listing
//! their groups), and the web inbox's sign-in by the authorization-code flow with PKCE.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `[oidc]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer's URL, exactly as its tokens' `iss` says it (discovery is read from
    /// `ISSUER/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client id signoff is registered with; also the audience tokens must name.
    pub client_id: String,
    /// The client secret, for the web inbox's sign-in (confidential client).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The audience bearer tokens must name, when it is not the client id.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim holding the directory user id [default: preferred_username].
    #[serde(default)]
    pub user_claim: Option<String>,
    /// A claim listing the user's groups: the directory groups it names are the user's
    /// memberships (kept in step as directory changes); groups it does not name lose them.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// How far the issuer's clock may be from ours [default: 60s; at most 5 min].
    #[serde(default)]
    pub clock_skew: Option<String>,
    /// The web inbox's address as the browser reaches it, for the redirect back
    /// (`URL/signin/sso/callback`) [default: from the request's Host].
    #[serde(default)]
    pub public_url: Option<String>,
}

impl OidcConfig {
    /// Checks what can be checked without the issuer; an error names the setting.
    pub fn check(&self) -> Result<Duration, String> {
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(format!("oidc.issuer: `{}` is not an http(s) URL", self.issuer));
        }
        if self.client_id.trim().is_empty() {
            return Err("oidc.client_id: must not be empty".into());
        }
        let skew = match &self.clock_skew {
            None => Duration::from_secs(60),
            Some(text) => signoff_engine::duration::parse(text)
                .ok()
                .and_then(|d| Duration::try_from(d).ok())
                .ok_or_else(|| format!("oidc.clock_skew: `{text}` is not a duration such as 60s"))?,
        };
        if skew > Duration::from_secs(300) {
            return Err(format!("oidc.clock_skew: {} is more than 5 minutes", self.clock_skew.as_deref().unwrap_or_default()));
        }
        Ok(skew)
    }
}

/// What the issuer's discovery document says.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: String,
    /// The groups the token lists, when a groups claim is configured.
    pub groups: Option<Vec<String>>,
}

/// The keys, by id, with the algorithm each is for.
type Keys = HashMap<String, (DecodingKey, Algorithm)>;

/// A key set is fetched again for an unknown key id at most this often (its first fetch aside),
/// so tokens naming made-up keys cannot make us hammer the issuer.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

pub struct Oidc {
    config: OidcConfig,
    skew: Duration,
    http: reqwest::Client,
    discovery: tokio::sync::OnceCell<Discovery>,
    keys: ArcSwap<Keys>,
    /// When the key set was last fetched for an unknown key id.
    refetched: tokio::sync::Mutex<Option<Instant>>,
}

fn claim_text(claims: &Value, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_string)
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Oidc, String> {
        let skew = config.check()?;
        let (http, trusted) = crate::outgoing_client(|| reqwest::Client::builder().timeout(Duration::from_secs(10))).map_err(|e| format!("oidc: {e}"))?;
        if !trusted && config.issuer.starts_with("https:") {
            return Err("oidc.issuer: this system has no CA certificates to check the issuer's with (install ca-certificates)".into());
        }
        Ok(Oidc { config, skew, http, discovery: tokio::sync::OnceCell::new(), keys: ArcSwap::from_pointee(HashMap::new()), refetched: tokio::sync::Mutex::new(None) })
    }

    /// The discovery document, read once (and again after a failure).
    async fn discovery(&self) -> Result<&Discovery, String> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
                let d: Discovery = self.get_json(&url).await?;
                if d.issuer != self.config.issuer {
                    return Err(format!("the issuer's discovery document names `{}`, not `{}`", d.issuer, self.config.issuer));
                }
                Ok(d)
            })
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp = self.http.get(url).send().await.map_err(|e| format!("cannot reach {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        resp.json().await.map_err(|e| format!("{url}: {e}"))
    }

    async fn fetch_keys(&self) -> Result<(), String> {
        let uri = self.discovery().await?.jwks_uri.clone();
        let set: JwkSet = self.get_json(&uri).await?;
        let mut keys = Keys::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) else { continue };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    jsonwebtoken::jwk::EllipticCurve::P256 => Algorithm::ES256,
                    jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                    _ => continue,
                },
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => match jwk.common.key_algorithm {
                    Some(jsonwebtoken::jwk::KeyAlgorithm::RS384) => Algorithm::RS384,
                    Some(jsonwebtoken::jwk::KeyAlgorithm::RS512) => Algorithm::RS512,
                    Some(jsonwebtoken::jwk::KeyAlgorithm::PS256) => Algorithm::PS256,
                    _ => Algorithm::RS256,
                },
                _ => continue,
            };
            keys.insert(kid, (key, alg));
        }
        self.keys.store(std::sync::Arc::new(keys));
        Ok(())
    }

    /// The key `kid` names: from the cache, or from the key set fetched again (at most every
    /// few seconds, so tokens naming made-up keys cannot make us hammer the issuer).
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), String> {
        if let Some(k) = self.keys.load().get(kid) {
            return Ok(k.clone());
        }
        {
            let mut last = self.refetched.lock().await;
            if let Some(k) = self.keys.load().get(kid) {
                return Ok(k.clone());
            }
            if last.is_some_and(|t| t.elapsed() < REFETCH_AT_MOST_EVERY) {
                return Err(format!("the token's key `{kid}` is not in the issuer's key set"));
            }
            let first = self.keys.load().is_empty();
            self.fetch_keys().await?;
            if !first {
                *last = Some(Instant::now());
            }
        }
        self.keys.load().get(kid).cloned().ok_or_else(|| format!("the token's key `{kid}` is not in the issuer's key set"))
    }

    /// Whether `token` looks like a JWT (three base64url parts), rather than an opaque token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// Checks `token` (signature, issuer, audience, expiry and not-before at `now`, within the
    /// clock skew; the nonce when one is expected) and answers whom it names.
    pub async fn verify(&self, token: &str, now: Timestamp, nonce: Option<&str>) -> Result<Identity, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        let kid = header.kid.ok_or("the token names no key (kid)")?;
        let (key, alg) = self.key(&kid).await?;
        if header.alg != alg {
            return Err(format!("the token says {:?} but its key is for {alg:?}", header.alg));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[self.config.audience.as_deref().unwrap_or(&self.config.client_id)]);
        // Times are checked below, against the service's clock.
        validation.validate_exp = false;
        validation.required_spec_claims = ["iss", "aud", "exp"].iter().map(|s| s.to_string()).collect();
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| format!("the token does not verify: {e}"))?;
        let claims = data.claims;
        let skew = self.skew.as_secs() as i64;
        let now_s = now.as_second();
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or("the token has no expiry (exp)")?;
        if now_s >= exp + skew {
            return Err("the token has expired".into());
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
            && now_s + skew < nbf
        {
            return Err("the token is not valid yet (nbf)".into());
        }
        if let Some(iat) = claims.get("iat").and_then(Value::as_i64)
            && now_s + skew < iat
        {
            return Err("the token was issued in the future (iat)".into());
        }
        if let Some(expected) = nonce
            && claim_text(&claims, "nonce").as_deref() != Some(expected)
        {
            return Err("the token's nonce is not this sign-in's".into());
        }
        let user_claim = self.config.user_claim.as_deref().unwrap_or("preferred_username");
        let user = claim_text(&claims, user_claim).ok_or_else(|| format!("the token has no `{user_claim}` claim"))?;
        let groups = self.config.groups_claim.as_deref().map(|name| {
            claims.get(name).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
        });
        Ok(Identity { user, groups })
    }

    /// Where to send a browser to sign in, with the `state`, `nonce` and PKCE `challenge` of
    /// this sign-in; `redirect` is our callback.
    pub async fn authorization_url(&self, redirect: &str, state: &str, nonce: &str, challenge: &str) -> Result<String, String> {
        let endpoint = &self.discovery().await?.authorization_endpoint;
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.config.client_id.as_str()),
            ("redirect_uri", redirect),
            ("scope", "openid profile email"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| e.to_string())?;
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{sep}{query}"))
    }

    /// Trades an authorization `code` (with its PKCE `verifier`) for an ID token, and checks it.
    pub async fn redeem(&self, code: &str, verifier: &str, redirect: &str, nonce: &str, now: Timestamp) -> Result<Identity, String> {
        let endpoint = self.discovery().await?.token_endpoint.clone();
        let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect), ("client_id", self.config.client_id.as_str()), ("code_verifier", verifier)];
        if let Some(secret) = &self.config.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let body = serde_urlencoded::to_string(&form).map_err(|e| e.to_string())?;
        let resp = self
            .http
            .post(&endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
        let status = resp.status();
        let answer: Value = resp.json().await.map_err(|e| format!("{endpoint}: {e}"))?;
        if !status.is_success() {
            return Err(format!("the issuer refused the code ({status}): {}", answer["error"].as_str().unwrap_or("?")));
        }
        let id_token = answer["id_token"].as_str().ok_or("the issuer's answer has no id_token")?;
        self.verify(id_token, now, Some(nonce)).await
    }

    /// The configured public address of the web inbox, if any.
    pub fn public_url(&self) -> Option<&str> {
        self.config.public_url.as_deref()
    }
}

/// A random URL-safe string (for state, nonce and the PKCE verifier).
pub fn random() -> String {
    let mut bytes = [0u8; 32];
    let _ = getrandom::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
