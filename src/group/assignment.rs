//! The spread of a group's partitions over its live members: deterministic, so every
//! member computes the same answer from the same member list without talking to the others.
//!
//! Members are ordered by id and partitions dealt out in turn (partition `i` of the sorted
//! list to member `i mod M`), so each member gets ⌊N/M⌋ or ⌈N/M⌉ partitions — within one
//! of each other. Members beyond the partition count get none and stand by. The member list
//! comes from `changestream.members` ([`live_members`](super::membership::live_members));
//! when two members briefly disagree about it, the partition's owner column decides (a
//! partition is claimed only from no owner or a gone one), and the next round agrees again.

/// The partitions `member` should read, out of `partitions`, when `members` are live.
/// Empty when `member` is not among them. The order of both inputs does not matter.
pub fn partitions_for(member: &str, partitions: &[i32], members: &[String]) -> Vec<i32> {
    let mut members: Vec<&str> = members.iter().map(String::as_str).collect();
    members.sort_unstable();
    members.dedup();
    let Some(position) = members.iter().position(|m| *m == member) else {
        return Vec::new();
    };
    let mut partitions = partitions.to_vec();
    partitions.sort_unstable();
    partitions
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % members.len() == position)
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_partition_goes_to_exactly_one_member_within_one_of_even() {
        for n in 1..=9 {
            let partitions: Vec<i32> = (0..n).collect();
            for m in 1..=6 {
                let ids: Vec<String> = (0..m).map(|i| format!("m{i:02}")).collect();
                let mut seen = Vec::new();
                let mut counts = Vec::new();
                for id in &ids {
                    let mine = partitions_for(id, &partitions, &ids);
                    counts.push(mine.len());
                    seen.extend(mine);
                }
                seen.sort_unstable();
                assert_eq!(seen, partitions, "n={n} m={m}");
                let (min, max) = (counts.iter().min(), counts.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "n={n} m={m} {counts:?}");
            }
        }
    }

    #[test]
    fn the_answer_does_not_depend_on_input_order() {
        let a = members(&["c", "a", "b"]);
        let b = members(&["b", "c", "a", "a"]);
        for id in ["a", "b", "c"] {
            assert_eq!(
                partitions_for(id, &[3, 1, 0, 2], &a),
                partitions_for(id, &[0, 1, 2, 3], &b)
            );
        }
        assert_eq!(partitions_for("a", &[0, 1, 2, 3], &a), vec![0, 3]);
        assert_eq!(partitions_for("b", &[0, 1, 2, 3], &a), vec![1]);
    }

    #[test]
    fn unknown_members_and_spare_members_get_nothing() {
        let ids = members(&["a", "b", "c"]);
        assert!(partitions_for("z", &[0, 1], &ids).is_empty());
        assert!(partitions_for("c", &[0, 1], &ids).is_empty());
        assert_eq!(partitions_for("a", &[0], &members(&["a"])), vec![0]);
    }
}
