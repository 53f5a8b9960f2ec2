//! `consul_acl_agent_token`: make sure the cluster's agent token (`consul_agent_token`, the
//! `tokens.agent` of every agent's promfleet-acl.json) exists in Consul with the minimal agent
//! policy, through the ACL HTTP API with the management token. Idempotent: a token that
//! already resolves (`GET /v1/acl/token/self` with it) is left alone; the policy is created
//! only when no policy of its name is listed. When the agent token is the management token
//! (no `consul_agent_token`: README "Consul"), there is nothing to create.
//!
//! Owns: the module's arguments and the ACL requests. The agent policy is the one Consul
//! documents for an agent token, `node:write` and `service:read`
//! (https://developer.hashicorp.com/consul/docs/secure/acl/token/agent), with `node_prefix ""`
//! as one token serves every agent of the stack, whatever its node name.

use serde::Deserialize;
use serde_json::json;

use super::consul::{AGENT_TIMEOUT, ConsulClient};
use super::http::json_answer;
use super::{Done, HostCtx, TaskError};

/// Name of the policy linked to the agent token.
pub const AGENT_POLICY: &str = "promfleet-agent";

/// Rules of [`AGENT_POLICY`] (HCL, as Consul's ACL API takes them).
pub const AGENT_RULES: &str =
    "node_prefix \"\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\n";

/// `consul_acl_agent_token`.
#[derive(Clone)]
pub struct AgentToken {
    /// The agent (URL) of this datacenter the requests go to.
    pub url: String,
    pub management_token: String,
    pub agent_token: String,
}

/// Never print the tokens (the masker covers them too; this keeps `{:?}` of a plan clean).
impl std::fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentToken({})", self.url)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Policy {
    #[serde(default)]
    name: String,
}

impl AgentToken {
    fn request(
        &self,
        consul: &ConsulClient,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        consul
            .http()
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')))
            .timeout(AGENT_TIMEOUT)
            .header("X-Consul-Token", token)
    }

    /// Whether the agent token resolves in Consul (403 "ACL not found" when it does not).
    async fn token_exists(&self, consul: &ConsulClient) -> Result<bool, String> {
        let resp = self
            .request(
                consul,
                reqwest::Method::GET,
                "/v1/acl/token/self",
                &self.agent_token,
            )
            .send()
            .await
            .map_err(|e| format!("GET /v1/acl/token/self: {e}"))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            403 => Ok(false),
            s => Err(format!("GET /v1/acl/token/self: HTTP {s}")),
        }
    }

    async fn ensure_policy(&self, consul: &ConsulClient) -> Result<bool, String> {
        let mgmt = &self.management_token;
        let listed: Vec<Policy> = json_answer(
            self.request(consul, reqwest::Method::GET, "/v1/acl/policies", mgmt)
                .send()
                .await
                .map_err(|e| format!("GET /v1/acl/policies: {e}"))?,
            "/v1/acl/policies",
        )
        .await?;
        if listed.iter().any(|p| p.name == AGENT_POLICY) {
            return Ok(false);
        }
        let body = json!({
            "Name": AGENT_POLICY,
            "Description": "promfleet: the Consul agents' token (node:write, service:read)",
            "Rules": AGENT_RULES,
        });
        let _: serde_json::Value = json_answer(
            self.request(consul, reqwest::Method::PUT, "/v1/acl/policy", mgmt)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("PUT /v1/acl/policy: {e}"))?,
            "PUT /v1/acl/policy",
        )
        .await?;
        Ok(true)
    }

    async fn create_token(&self, consul: &ConsulClient) -> Result<(), String> {
        let body = json!({
            "Description": "promfleet: agent token of the Consul cluster stack",
            "SecretID": self.agent_token,
            "Policies": [{ "Name": AGENT_POLICY }],
        });
        let _: serde_json::Value = json_answer(
            self.request(
                consul,
                reqwest::Method::PUT,
                "/v1/acl/token",
                &self.management_token,
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("PUT /v1/acl/token: {e}"))?,
            "PUT /v1/acl/token",
        )
        .await?;
        Ok(())
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        if self.agent_token == self.management_token {
            return Ok(Done::ok().with("the agents use the management token"));
        }
        if ctx.check {
            return Ok(Done::skipped("not checked in --check mode"));
        }
        let consul = ctx.service::<ConsulClient>()?;
        let fail =
            |e: String| TaskError::transient(format!("Consul agent token at {}: {e}", self.url));
        if self.token_exists(&consul).await.map_err(fail)? {
            return Ok(Done::ok().with("agent token exists"));
        }
        let created_policy = self.ensure_policy(&consul).await.map_err(fail)?;
        self.create_token(&consul).await.map_err(fail)?;
        Ok(Done::changed().with(if created_policy {
            format!("policy {AGENT_POLICY} and the agent token created")
        } else {
            format!("agent token created with policy {AGENT_POLICY}")
        }))
    }
}

/// `consul_acl_agent_token`.
pub struct AgentTokenModule;

impl super::Module for AgentTokenModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["url", "management_token", "agent_token"], &[])
    }

    fn plan(
        &self,
        args: &serde_json::Value,
        _cx: &mut super::PlanCtx<'_>,
    ) -> Result<super::Action, String> {
        let a = super::Args(args);
        let url = a.str("url")?;
        if url.is_empty() {
            return Err("`url` is empty: no Consul agent serves this host's datacenter".into());
        }
        Ok(super::Action::ConsulAclAgentToken(AgentToken {
            url,
            management_token: a.str("management_token")?,
            agent_token: a.str("agent_token")?,
        }))
    }
}

impl super::Task for AgentToken {
    super::task_run!();
}
