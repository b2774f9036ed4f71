//! Growing volumes, decided without a client: the spec asks for a size, the StatefulSets'
//! claim templates and the claims say what exists, and [`plan`] says what to do. A
//! StatefulSet's claim templates cannot change, so growing means: every claim of the set
//! patched to the new size (the StorageClass expands the volume), then the StatefulSet
//! deleted without its pods and applied again with the new template. Pods keep running
//! throughout. Sizes only grow (a CEL rule refuses a smaller one at admission).

use std::collections::BTreeMap;

/// A StatefulSet as built: the size its claim template asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub set: String,
    pub size: u64,
}

/// A claim as it is: its request, and its capacity once bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    pub requested: u64,
    pub capacity: Option<u64>,
}

/// What to do for one StatefulSet whose volumes must grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    pub set: String,
    pub size: u64,
    /// Claims still asking for less.
    pub expand: Vec<String>,
}

/// The StatefulSet a claim belongs to: claims are named `<template>-<set>-<ordinal>`.
pub fn set_of_claim<'a>(claim: &'a str, template: &str) -> Option<&'a str> {
    let rest = claim.strip_prefix(template)?.strip_prefix('-')?;
    let (set, ordinal) = rest.rsplit_once('-')?;
    ordinal.parse::<u32>().ok().map(|_| set)
}

/// The growth each StatefulSet needs: those whose existing claim template (`existing`, by
/// set name) asks for less than wanted. A set not created yet needs none; nor does one whose
/// template asks for more (refused at admission; the apply reports it).
pub fn plan(wanted: &[Wanted], existing: &BTreeMap<String, u64>, claims: &[Claim], template: &str) -> Vec<Growth> {
    wanted
        .iter()
        .filter(|w| existing.get(&w.set).is_some_and(|size| *size < w.size))
        .map(|w| Growth {
            set: w.set.clone(),
            size: w.size,
            expand: claims
                .iter()
                .filter(|c| set_of_claim(&c.name, template) == Some(w.set.as_str()) && c.requested < w.size)
                .map(|c| c.name.clone())
                .collect(),
        })
        .collect()
}

/// How far a claim got towards its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Capacity at least the request.
    Ready,
    /// Asked to grow; the volume is not that big yet.
    Expanding,
}

pub fn phase(claim: &Claim) -> Phase {
    match claim.capacity {
        Some(capacity) if capacity >= claim.requested => Phase::Ready,
        _ => Phase::Expanding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    fn claim(name: &str, requested: u64) -> Claim {
        Claim {
            name: name.to_owned(),
            requested,
            capacity: Some(requested),
        }
    }

    #[test]
    fn claims_belong_to_the_set_named_inside_them() {
        assert_eq!(set_of_claim("data-demo-tsd-1-0", "data"), Some("demo-tsd-1"));
        assert_eq!(set_of_claim("data-demo-rabbitmq-2", "data"), Some("demo-rabbitmq"));
        assert_eq!(
            set_of_claim("data-demo-tsd-1", "data"),
            Some("demo-tsd"),
            "ordinal last"
        );
        assert_eq!(set_of_claim("logs-demo-tsd-1-0", "data"), None);
        assert_eq!(set_of_claim("data-demo-tsd-x", "data"), None);
    }

    #[test]
    fn a_bigger_size_expands_the_claims_still_smaller_and_recreates_the_set() {
        let wanted = [
            Wanted {
                set: "demo-tsd-1".into(),
                size: 2 * GI,
            },
            Wanted {
                set: "demo-tsd-2".into(),
                size: 2 * GI,
            },
        ];
        let existing = BTreeMap::from([("demo-tsd-1".to_owned(), GI), ("demo-tsd-2".to_owned(), 2 * GI)]);
        let claims = [
            claim("data-demo-tsd-1-0", GI),
            claim("data-demo-tsd-1-1", 2 * GI),
            claim("data-demo-tsd-2-0", 2 * GI),
        ];
        assert_eq!(
            plan(&wanted, &existing, &claims, "data"),
            [Growth {
                set: "demo-tsd-1".into(),
                size: 2 * GI,
                expand: vec!["data-demo-tsd-1-0".into()],
            }],
            "one claim already grown (an earlier reconcile stopped half-way), the other set already done"
        );
    }

    #[test]
    fn new_sets_and_smaller_sizes_need_nothing() {
        let wanted = [Wanted {
            set: "demo-tsd-1".into(),
            size: GI,
        }];
        assert!(plan(&wanted, &BTreeMap::new(), &[], "data").is_empty());
        let bigger = BTreeMap::from([("demo-tsd-1".to_owned(), 2 * GI)]);
        assert!(plan(&wanted, &bigger, &[claim("data-demo-tsd-1-0", 2 * GI)], "data").is_empty());
    }

    #[test]
    fn a_claim_is_ready_once_its_capacity_reaches_the_request() {
        let mut c = claim("data-demo-tsd-1-0", 2 * GI);
        assert_eq!(phase(&c), Phase::Ready);
        c.capacity = Some(GI);
        assert_eq!(phase(&c), Phase::Expanding);
        c.capacity = None;
        assert_eq!(phase(&c), Phase::Expanding, "not bound yet");
    }
}
