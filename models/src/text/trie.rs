//! Port of `transformers.tokenization_utils.Trie` (transformers 4.34): splits a text on
//! the added tokens in one pass, preferring the earliest start and, from there, the longest
//! token (with the reference's exact lookahead rules). Works on chars like Python `str`.

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
struct Node {
    children: HashMap<char, usize>,
    end: bool,
}

/// A character trie of the added tokens.
#[derive(Debug, Clone)]
pub struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    /// Adds a word (empty words are ignored).
    pub fn add(&mut self, word: &str) {
        if word.is_empty() {
            return;
        }
        let mut node = 0;
        for c in word.chars() {
            node = match self.nodes[node].children.get(&c) {
                Some(&n) => n,
                None => {
                    self.nodes.push(Node::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[node].children.insert(c, n);
                    n
                }
            };
        }
        self.nodes[node].end = true;
    }

    fn child(&self, node: usize, c: Option<char>) -> Option<usize> {
        c.and_then(|c| self.nodes[node].children.get(&c).copied())
    }

    /// `Trie.split`: the text cut at the boundaries of the words found.
    pub fn split(&self, text: &str) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut states: Vec<(usize, usize)> = Vec::new();
        let mut offsets = vec![0usize];
        let mut skip = 0usize;
        for (current, &current_char) in chars.iter().enumerate() {
            if skip > 0 && current < skip {
                continue;
            }
            let mut to_remove = Vec::new();
            let mut reset = false;
            for i in 0..states.len() {
                let (start, pointer) = states[i];
                if self.nodes[pointer].end {
                    let (s, e, k) = self.lookahead(&chars, &states, start, current);
                    skip = k.unwrap_or(skip);
                    offsets.push(s);
                    offsets.push(e);
                    reset = true;
                    break;
                } else if let Some(next) = self.child(pointer, Some(current_char)) {
                    states[i].1 = next;
                } else {
                    to_remove.push(start);
                }
            }
            if reset {
                states.clear();
            } else {
                states.retain(|(s, _)| !to_remove.contains(s));
            }
            if current >= skip {
                if let Some(n) = self.child(0, Some(current_char)) {
                    states.push((current, n));
                }
            }
        }
        if let Some(&(start, _)) = states.iter().find(|(_, p)| self.nodes[*p].end) {
            offsets.push(start);
            offsets.push(chars.len());
        }
        cut_text(&chars, offsets)
    }

    /// The lookahead of `Trie.split` once the state at `start` is a full match: returns
    /// the `(start, end)` to cut and the new `skip`, if any.
    fn lookahead(
        &self,
        chars: &[char],
        states: &[(usize, usize)],
        mut start: usize,
        current: usize,
    ) -> (usize, usize, Option<usize>) {
        let mut end = current;
        let mut skip = None;
        for &(lookstart, mut pointer) in states {
            let mut index;
            if lookstart > start {
                break;
            } else if lookstart < start {
                index = current + 1;
                end = current + 1;
            } else {
                index = current;
                end = current;
            }
            let mut next_char = chars.get(index).copied();
            if self.nodes[pointer].end {
                start = lookstart;
                end = index;
                skip = Some(index);
            }
            while let Some(next) = self.child(pointer, next_char) {
                pointer = next;
                index += 1;
                if self.nodes[pointer].end {
                    start = lookstart;
                    end = index;
                    skip = Some(index);
                }
                if index == chars.len() {
                    break;
                }
                next_char = chars.get(index).copied();
            }
        }
        (start, end, skip)
    }
}

/// `Trie.cut_text`.
fn cut_text(chars: &[char], mut offsets: Vec<usize>) -> Vec<String> {
    offsets.push(chars.len());
    let mut tokens = Vec::new();
    let mut start = 0;
    for end in offsets {
        if start >= end {
            continue;
        }
        tokens.push(chars[start..end].iter().collect());
        start = end;
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(words: &[&str]) -> Trie {
        let mut t = Trie::default();
        for w in words {
            t.add(w);
        }
        t
    }

    #[test]
    fn reference_docstring_examples() {
        let t = trie(&["[CLS]", "extra_id_1", "extra_id_100"]);
        assert_eq!(
            t.split("[CLS] This is a extra_id_100"),
            ["[CLS]", " This is a ", "extra_id_100"]
        );
        let t = trie(&["A", "BC"]);
        assert_eq!(t.split("ABC"), ["A", "BC"]);
        let t = trie(&["ABC", "B", "CD"]);
        assert_eq!(t.split("ABCD"), ["ABC", "D"]);
        let t = trie(&["TOKEN]", "[SPECIAL_TOKEN]"]);
        assert_eq!(
            t.split("This is something [SPECIAL_TOKEN]"),
            ["This is something ", "[SPECIAL_TOKEN]"]
        );
        let t = trie(&["AB", "B", "C"]);
        assert_eq!(t.split("ABC"), ["AB", "C"]);
    }

    #[test]
    fn media_tokens() {
        let t = trie(&["<image>", "<img1>", "<img10>", "</image>"]);
        assert_eq!(
            t.split("a<image><img10><img1></image>b"),
            ["a", "<image>", "<img10>", "<img1>", "</image>", "b"]
        );
        assert_eq!(t.split("<im<img1>"), ["<im", "<img1>"]);
    }
}
