//! A YAML document as a tree of located nodes, and the helpers formats use to read it.
//!
//! Owns: turning YAML text into `Node`s (every scalar, sequence, mapping and key keeps its
//! line and column via `serde_saphyr::Spanned`), mapping parser errors to
//! `InventoryError::Syntax`, and shape checks with located messages (unknown keys with a
//! suggestion, wrong types). It knows nothing about inventories.
//!
//! Why a tree instead of derived structs: the Ansible formats are maps with free-form keys,
//! and we want every message (unknown key, bad ip, duplicate) to point at the exact node.
//! Derived structs lose locations under `flatten`/`untagged` and give unknown-field errors
//! we would have to re-parse to add a suggestion.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::Vars;
use super::error::{InventoryError, SourcePos};

/// Line and column (1-based; 0 = unknown) of a node in the current file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Loc {
    pub line: u64,
    pub column: u64,
}

impl Loc {
    pub fn at(self, file: &Path) -> SourcePos {
        SourcePos {
            file: file.to_path_buf(),
            line: self.line,
            column: self.column,
        }
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub loc: Loc,
}

/// The node's value. Mappings keep their entries in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Kind {
    /// What the value is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(d)?;
        Ok(Node {
            kind: spanned.value,
            loc: Loc {
                line: spanned.referenced.line(),
                column: spanned.referenced.column(),
            },
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Kind::Map(entries))
    }
}

/// Parse YAML text into a node tree; parser errors become `Syntax` errors with their location.
pub(crate) fn parse_yaml(text: &str, file: &Path) -> Result<Node, InventoryError> {
    // The default budget (250k nodes) is sized for configs, not for 100k-host inventories;
    // every node costs at least a couple of input bytes, so scale with the input instead.
    let scaled = text.len().saturating_mul(2);
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: scaled.max(250_000),
            max_events: scaled.max(1_000_000),
        },
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(text, options) {
        Ok(Some(node)) => Ok(node),
        // An empty or comment-only file: let the format report "no hosts".
        Ok(None) => Ok(Node {
            kind: Kind::Map(Vec::new()),
            loc: Loc { line: 1, column: 1 },
        }),
        Err(err) => Err(syntax_from_saphyr(&err, file)),
    }
}

fn syntax_from_saphyr(err: &serde_saphyr::Error, file: &Path) -> InventoryError {
    let loc = err
        .location()
        .map(|l| Loc {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or_default();
    let full = err.without_snippet().to_string();
    // Keep the message on one line: the location is already in our prefix.
    let first_line = full.lines().next().unwrap_or("invalid YAML").trim();
    let message = strip_location_suffix(first_line);
    let (message, help) = explain(message);
    InventoryError::Syntax {
        pos: loc.at(file),
        message: format!("invalid YAML: {message}"),
        help: Some(help.to_owned()),
    }
}

/// Reword parser messages that mention library internals, and pick a fitting hint.
fn explain(message: &str) -> (String, &'static str) {
    if message.contains("budget breached") {
        // Anchors/aliases that expand past the parser's node budget: an alias bomb, or an
        // inventory far larger than any real fleet.
        return (
            "the document expands to too many nodes (anchors and aliases multiplying)".to_owned(),
            "remove the nested aliases; write the hosts out, or split the inventory",
        );
    }
    if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return (
            format!("duplicate key `{key}`"),
            "a key may appear once per mapping; merge the two entries",
        );
    }
    if message.contains("tab") {
        return (
            message.to_owned(),
            "YAML indentation must use spaces, not tabs",
        );
    }
    (
        message.to_owned(),
        "check indentation and quoting near this line",
    )
}

/// serde-saphyr appends " at line X column Y"; our prefix already says that.
fn strip_location_suffix(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].trim_end_matches(','),
        None => msg,
    }
}

/// Reads nodes of one file and reports shape errors with their location.
pub(crate) struct Reader<'a> {
    pub file: &'a Path,
}

impl<'a> Reader<'a> {
    pub fn pos(&self, loc: Loc) -> SourcePos {
        loc.at(self.file)
    }

    pub fn error(
        &self,
        loc: Loc,
        message: impl Into<String>,
        help: Option<String>,
    ) -> InventoryError {
        InventoryError::Syntax {
            pos: self.pos(loc),
            message: message.into(),
            help,
        }
    }

    fn expected(&self, node: &Node, what: &str, context: &str) -> InventoryError {
        self.error(
            node.loc,
            format!("{context}: expected {what}, found {}", node.kind.describe()),
            None,
        )
    }

    /// The entries of a mapping (null counts as empty, `hosts:` with nothing under it).
    pub fn map<'n>(
        &self,
        node: &'n Node,
        context: &str,
    ) -> Result<&'n [(Node, Node)], InventoryError> {
        match &node.kind {
            Kind::Map(entries) => Ok(entries),
            Kind::Null => Ok(&[]),
            _ => Err(self.expected(node, "a mapping", context)),
        }
    }

    pub fn seq<'n>(&self, node: &'n Node, context: &str) -> Result<&'n [Node], InventoryError> {
        match &node.kind {
            Kind::Seq(items) => Ok(items),
            Kind::Null => Ok(&[]),
            _ => Err(self.expected(node, "a list", context)),
        }
    }

    /// A mapping key or scalar as text (numbers and booleans are accepted as their spelling).
    pub fn string(&self, node: &Node, context: &str) -> Result<String, InventoryError> {
        scalar_text(&node.kind).ok_or_else(|| self.expected(node, "a string", context))
    }

    pub fn bool(&self, node: &Node, context: &str) -> Result<bool, InventoryError> {
        match &node.kind {
            Kind::Bool(b) => Ok(*b),
            Kind::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Ok(true),
                "false" | "no" | "off" => Ok(false),
                _ => Err(self.expected(node, "true or false", context)),
            },
            _ => Err(self.expected(node, "true or false", context)),
        }
    }

    pub fn port(&self, node: &Node, context: &str) -> Result<u16, InventoryError> {
        let parsed = match &node.kind {
            Kind::Int(i) => u16::try_from(*i).ok(),
            Kind::UInt(u) => u16::try_from(*u).ok(),
            Kind::Str(s) => s.trim().parse::<u16>().ok(),
            _ => None,
        };
        match parsed {
            Some(p) if p > 0 => Ok(p),
            _ => Err(self.error(
                node.loc,
                format!(
                    "{context}: expected a port number 1-65535, found {}",
                    node.kind.describe()
                ),
                None,
            )),
        }
    }

    /// Checked keys of a mapping: every key must be one of `allowed`, else an
    /// `UnknownKey` error suggesting the nearest allowed key.
    pub fn fields<'n>(
        &self,
        node: &'n Node,
        allowed: &[&str],
        context: &str,
    ) -> Result<Vec<(&'n str, &'n Node)>, InventoryError> {
        let mut out = Vec::new();
        for (k, v) in self.map(node, context)? {
            let Kind::Str(key) = &k.kind else {
                return Err(self.expected(k, "a string key", context));
            };
            if !allowed.contains(&key.as_str()) {
                return Err(InventoryError::UnknownKey {
                    key: key.clone(),
                    suggestion: nearest(key, allowed.iter().copied()),
                    pos: self.pos(k.loc),
                });
            }
            out.push((key.as_str(), v));
        }
        Ok(out)
    }

    /// A free-form variable map.
    pub fn vars(&self, node: &Node, context: &str) -> Result<Vars, InventoryError> {
        let mut vars = Vars::new();
        for (k, v) in self.map(node, context)? {
            vars.insert(self.string(k, context)?, to_json(v));
        }
        Ok(vars)
    }
}

/// Text of a scalar node; `None` for null, lists and mappings.
pub(crate) fn scalar_text(kind: &Kind) -> Option<String> {
    match kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Int(i) => Some(i.to_string()),
        Kind::UInt(u) => Some(u.to_string()),
        Kind::Float(f) => Some(f.to_string()),
        Kind::Bool(b) => Some(b.to_string()),
        Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
    }
}

/// A node as a JSON value (for vars).
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Int(i) => Value::from(*i),
        Kind::UInt(u) => Value::from(*u),
        Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Kind::Str(s) => Value::String(s.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (scalar_text(&k.kind).unwrap_or_default(), to_json(v)))
                .collect(),
        ),
    }
}

pub(crate) use crate::base::suggest::{near_names, nearest};
