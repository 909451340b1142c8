//! "Did you mean …": the known name closest to a mistyped one, for errors that list choices.

/// The candidate nearest to `word` by edit distance, if it is near enough to be a typo (at
/// most a third of the word's length, and at least one edit allowed).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `what `word` is not one of: a, b, c` with a "did you mean" where one is near.
pub fn unknown<'a>(what: &str, word: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> String {
    let known: Vec<&str> = candidates.clone().into_iter().collect();
    let list = if known.is_empty() { "(none)".to_string() } else { known.join(", ") };
    match nearest(word, candidates) {
        Some(near) => format!("{what} `{word}`: did you mean `{near}`? (known: {list})"),
        None => format!("{what} `{word}` (known: {list})"),
    }
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_near_names() {
        assert_eq!(nearest("financ", ["manager", "finance", "legal"]), Some("finance"));
        assert_eq!(nearest("quote-discont", ["quote-discount", "prod-deploy"]), Some("quote-discount"));
        assert_eq!(nearest("xyz", ["manager", "finance"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(unknown("no step", "mngr", ["manager"]), "no step `mngr` (known: manager)");
        assert_eq!(unknown("no step", "managr", ["manager", "legal"]), "no step `managr`: did you mean `manager`? (known: manager, legal)");
    }
}
