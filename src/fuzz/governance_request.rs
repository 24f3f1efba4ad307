//! The governance request as the HTTP edge reads it: bytes through the strict JSON reader, then
//! [`GovernanceRequest::parse`].

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::governance::{summary, GovernanceRequest};
use crate::strict_json;

/// JSON read keeping every member of every object, repeated keys too: the oracle for "refuses
/// exactly the documents with a key twice in one object".
enum Tree {
    Leaf,
    List(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    fn repeats_a_key(&self) -> bool {
        match self {
            Tree::Leaf => false,
            Tree::List(items) => items.iter().any(Tree::repeats_a_key),
            Tree::Object(members) => {
                let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
                keys.sort_unstable();
                keys.windows(2).any(|w| w[0] == w[1])
                    || members.iter().any(|(_, v)| v.repeats_a_key())
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tree, D::Error> {
        struct TreeVisitor;
        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = Tree;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Tree::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry()? {
                    members.push((key, value));
                }
                Ok(Tree::Object(members))
            }
        }
        deserializer.deserialize_any(TreeVisitor)
    }
}

/// Strict JSON accepts exactly what serde_json accepts, minus a key repeated in one object, and
/// reads the same value; the parser never panics on what it accepts, and what it accepts can be
/// summarized and bound to an identity.
#[test]
fn strict_json_and_request_parser_hold_on_mutated_requests() {
    super::fuzz("governance_request", |bytes| {
        let strict = strict_json::from_slice(bytes);
        let lenient = serde_json::from_slice::<Value>(bytes);
        let repeats = serde_json::from_slice::<Tree>(bytes).map(|tree| tree.repeats_a_key());
        match (&strict, &lenient, &repeats) {
            (Ok(s), Ok(l), Ok(false)) => assert_eq!(s, l, "strict and serde_json read differently"),
            (Err(e), Ok(_), Ok(true)) => {
                assert!(e.to_string().contains("duplicate key"), "{e}");
            }
            (Err(_), Err(_), Err(_)) => {}
            _ => panic!(
                "strict {:?}, serde_json {:?}, repeated key {:?}",
                strict.as_ref().map(|_| ()),
                lenient.as_ref().map(|_| ()),
                repeats.as_ref().ok()
            ),
        }
        let Ok(value) = strict else { return };
        match GovernanceRequest::parse(&value) {
            Ok(mut request) => {
                let _ = summary(&request);
                let _ = request.aim.bind_identity("jake@example.org");
                let _ = request.aim.bind_identity(" Jake  SMITH ");
            }
            Err(rejection) => {
                let _ = (rejection.code(), rejection.headline(), rejection.is_shape());
            }
        }
    });
}
