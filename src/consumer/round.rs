//! The decisions of a membership round, from what the round observed in the group's tables.
//!
//! Pure: the member (`consumer::member`) reads its registration, the partition owners and
//! the live members, asks [`plan`], and carries the answer out (hands partitions over,
//! claims others, or stops as fenced). Rules:
//! - A member whose registration is gone was fenced: another member found it dead and took
//!   its partitions.
//! - A member that finds a partition it thinks its own owned by another (or by nobody) was
//!   fenced too: the other member claimed it while this one was silent.
//! - Otherwise its share is computed among the live members (itself included, even if its
//!   heartbeat is not visible yet): partitions it owns outside its share are released,
//!   partitions of its share it does not own are claimed, both in partition-list order.

use crate::group::assignment::partitions_for;

/// What a round observed.
#[derive(Debug)]
pub(crate) struct Observed<'a> {
    /// This member.
    pub(crate) member_id: &'a str,
    /// Its heartbeat found its registration.
    pub(crate) registered: bool,
    /// The group's partitions, in the consumer's list order (index = reader index).
    pub(crate) partitions: &'a [i32],
    /// Whether this member owns each of them, by index.
    pub(crate) owned: &'a [bool],
    /// Every partition's owner, as stored.
    pub(crate) owners: &'a [(i32, Option<String>)],
    /// The live members.
    pub(crate) live: &'a [String],
}

/// What a round does: indexes (into the partition list) to hand over, then to claim.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Moves {
    pub(crate) release: Vec<usize>,
    pub(crate) claim: Vec<usize>,
}

/// Why this member was fenced (completes "member … was fenced: …").
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fenced(pub(crate) String);

/// Decides the round (see the module docs).
///
/// # Errors
/// [`Fenced`] when this member lost its registration or a partition it owns.
pub(crate) fn plan(observed: &Observed<'_>) -> Result<Moves, Fenced> {
    if !observed.registered {
        return Err(Fenced(
            "its registration was removed by the member that took its partitions".into(),
        ));
    }
    let owns = |index: usize| observed.owned.get(index).copied().unwrap_or(false);
    for (partition, owner) in observed.owners {
        let Some(index) = observed.partitions.iter().position(|p| p == partition) else {
            continue;
        };
        if owns(index) && owner.as_deref() != Some(observed.member_id) {
            return Err(Fenced(format!(
                "partition {partition} is owned by {}",
                owner.as_deref().unwrap_or("nobody")
            )));
        }
    }
    let mut live = observed.live.to_vec();
    if !live.iter().any(|m| m == observed.member_id) {
        live.push(observed.member_id.to_owned());
    }
    let share = partitions_for(observed.member_id, observed.partitions, &live);
    let mut moves = Moves::default();
    for (index, partition) in observed.partitions.iter().enumerate() {
        match (owns(index), share.contains(partition)) {
            (true, false) => moves.release.push(index),
            (false, true) => moves.claim.push(index),
            _ => {}
        }
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(list: &[(i32, Option<&str>)]) -> Vec<(i32, Option<String>)> {
        list.iter()
            .map(|(p, o)| (*p, o.map(str::to_owned)))
            .collect()
    }

    fn live(members: &[&str]) -> Vec<String> {
        members.iter().map(|m| (*m).to_owned()).collect()
    }

    #[test]
    fn a_lost_registration_is_fenced() {
        let observed = Observed {
            member_id: "a",
            registered: false,
            partitions: &[0],
            owned: &[true],
            owners: &owners(&[(0, Some("a"))]),
            live: &live(&["a"]),
        };
        let Fenced(why) = plan(&observed).unwrap_err();
        assert!(why.contains("registration"), "{why}");
    }

    #[test]
    fn an_owned_partition_with_another_owner_is_fenced() {
        for (owner, named) in [(Some("b"), "owned by b"), (None, "owned by nobody")] {
            let observed = Observed {
                member_id: "a",
                registered: true,
                partitions: &[0, 1],
                owned: &[false, true],
                owners: &owners(&[(0, None), (1, owner)]),
                live: &live(&["a", "b"]),
            };
            let Fenced(why) = plan(&observed).unwrap_err();
            assert_eq!(why, format!("partition 1 is {named}"));
        }
    }

    #[test]
    fn a_lone_member_claims_everything_it_does_not_own() {
        // Not yet seen as live itself: it counts anyway.
        let observed = Observed {
            member_id: "a",
            registered: true,
            partitions: &[0, 1, 2],
            owned: &[false, true, false],
            owners: &owners(&[(0, None), (1, Some("a")), (2, Some("gone"))]),
            live: &[],
        };
        assert_eq!(
            plan(&observed).unwrap(),
            Moves {
                release: vec![],
                claim: vec![0, 2],
            }
        );
    }

    #[test]
    fn partitions_outside_the_share_are_released_and_the_share_claimed() {
        let partitions = [0, 1, 2, 3];
        let members = live(&["a", "b"]);
        let share = partitions_for("a", &partitions, &members);
        assert!(!share.is_empty() && share.len() < partitions.len());
        // "a" owns everything: it releases what is not its share, claims nothing.
        let all = Observed {
            member_id: "a",
            registered: true,
            partitions: &partitions,
            owned: &[true; 4],
            owners: &owners(&[
                (0, Some("a")),
                (1, Some("a")),
                (2, Some("a")),
                (3, Some("a")),
            ]),
            live: &members,
        };
        let moves = plan(&all).unwrap();
        assert!(moves.claim.is_empty());
        assert_eq!(
            moves.release,
            (0..4)
                .filter(|&i| !share.contains(&partitions[i]))
                .collect::<Vec<_>>()
        );
        // "a" owns nothing: it claims its share.
        let none = Observed {
            owned: &[false; 4],
            owners: &owners(&[(0, None), (1, None), (2, None), (3, None)]),
            ..all
        };
        let moves = plan(&none).unwrap();
        assert!(moves.release.is_empty());
        assert_eq!(
            moves.claim,
            (0..4)
                .filter(|&i| share.contains(&partitions[i]))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn owners_of_unknown_partitions_are_ignored() {
        let observed = Observed {
            member_id: "a",
            registered: true,
            partitions: &[0],
            owned: &[true],
            owners: &owners(&[(0, Some("a")), (7, Some("b"))]),
            live: &live(&["a"]),
        };
        assert_eq!(plan(&observed).unwrap(), Moves::default());
    }
}
