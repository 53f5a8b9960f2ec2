//! **TEST DOUBLE** of Consul's ACL token and policy endpoints, the few promfleet's
//! `consul_acl_agent_token` uses: `GET /v1/acl/token/self` (200 for a token it knows, 403 "ACL
//! not found" otherwise; the double's `acl_token` stands for the management token),
//! `GET /v1/acl/policies`, `PUT /v1/acl/policy` (500 "Invalid Policy" for a name already
//! taken, as Consul answers) and `PUT /v1/acl/token` (policies linked by name; 400 for an
//! unknown one; 500 for a SecretID already in use). Shapes follow Consul's ACL HTTP API
//! documentation (developer.hashicorp.com/consul/api-docs/acl/tokens, …/acl/policies).
//!
//! What it cannot prove: policy evaluation — the rules are stored as text, never enforced.

use serde_json::{Value, json};

/// A policy: name and rules (HCL text, kept as given).
#[derive(Clone, Debug, PartialEq)]
pub struct AclPolicy {
    pub id: String,
    pub name: String,
    pub rules: String,
}

/// A token: its secret and the names of its policies.
#[derive(Clone, Debug, PartialEq)]
pub struct AclToken {
    pub accessor_id: String,
    pub secret_id: String,
    pub policies: Vec<String>,
}

/// The ACL state of the double.
#[derive(Default, Debug)]
pub(crate) struct AclStore {
    pub(crate) policies: Vec<AclPolicy>,
    pub(crate) tokens: Vec<AclToken>,
    next: u64,
}

impl AclStore {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next)
    }

    pub(crate) fn token(&self, secret: &str) -> Option<&AclToken> {
        self.tokens.iter().find(|t| t.secret_id == secret)
    }

    pub(crate) fn policies_json(&self) -> Value {
        Value::Array(
            self.policies
                .iter()
                .map(|p| json!({"ID": p.id, "Name": p.name}))
                .collect(),
        )
    }

    /// `PUT /v1/acl/policy`: the created policy, or Consul's error for a taken name.
    pub(crate) fn create_policy(&mut self, body: &Value) -> Result<Value, (u16, String)> {
        let name = body
            .get("Name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or((400, "Invalid Policy: no Name is set".to_owned()))?;
        if self.policies.iter().any(|p| p.name == name) {
            return Err((
                500,
                format!("Invalid Policy: A Policy with Name {name:?} already exists"),
            ));
        }
        let p = AclPolicy {
            id: self.id(),
            name: name.to_owned(),
            rules: body
                .get("Rules")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        let out = json!({"ID": p.id, "Name": p.name, "Rules": p.rules});
        self.policies.push(p);
        Ok(out)
    }

    /// `PUT /v1/acl/token`: the created token, or Consul's error.
    pub(crate) fn create_token(&mut self, body: &Value) -> Result<Value, (u16, String)> {
        let mut policies = Vec::new();
        for p in body
            .get("Policies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = p.get("Name").and_then(Value::as_str).unwrap_or_default();
            if !self.policies.iter().any(|known| known.name == name) {
                return Err((400, format!("cannot find policy {name:?}")));
            }
            policies.push(name.to_owned());
        }
        let secret = match body.get("SecretID").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => self.id(),
        };
        if self.token(&secret).is_some() {
            return Err((500, "Invalid Token: SecretID is already in use".to_owned()));
        }
        let t = AclToken {
            accessor_id: self.id(),
            secret_id: secret,
            policies,
        };
        let out = token_json(&t);
        self.tokens.push(t);
        Ok(out)
    }
}

pub(crate) fn token_json(t: &AclToken) -> Value {
    json!({
        "AccessorID": t.accessor_id,
        "SecretID": t.secret_id,
        "Policies": t.policies.iter().map(|n| json!({"Name": n})).collect::<Vec<_>>(),
        "Local": false,
    })
}
