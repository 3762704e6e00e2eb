//! Fitting a long conversation into the model's context: the oldest turns are left out (with
//! the pictures and clips only they name), the rest renumbered. The latest user message is
//! never dropped.

use crate::text::{Conversation, Role};

/// A conversation with its oldest turn left out.
pub(crate) struct Shortened {
    /// The remaining conversation (placeholders renumbered, media lists filtered).
    pub conversation: Conversation,
    /// Which of the old images remain, in order (their new index is the position here).
    pub images: Vec<usize>,
    /// Which of the old speech clips remain, in order.
    pub speech: Vec<usize>,
    /// Messages left out.
    pub dropped: usize,
}

/// `conversation` without its oldest turn (the first user message and the answers up to the
/// next user message; system messages stay), or `None` when only the last user message's
/// turn is left.
pub(crate) fn drop_oldest_turn(conversation: &Conversation) -> Option<Shortened> {
    let msgs = &conversation.messages;
    let first = msgs.iter().position(|m| m.role != Role::System)?;
    let next_user = first
        + 1
        + msgs[first + 1..]
            .iter()
            .position(|m| m.role == Role::User)?;
    let (gone, kept): (Vec<_>, Vec<_>) = msgs
        .iter()
        .enumerate()
        .partition(|(i, m)| (first..next_user).contains(i) && m.role != Role::System);
    let keep_text: Vec<&str> = kept.iter().map(|(_, m)| m.content.as_str()).collect();
    let gone_text: Vec<&str> = gone.iter().map(|(_, m)| m.content.as_str()).collect();
    let images = survivors("image", conversation.images.len(), &gone_text, &keep_text);
    let speech = survivors("speech", conversation.speech.len(), &gone_text, &keep_text);
    let messages = kept
        .into_iter()
        .map(|(_, m)| {
            let mut m = m.clone();
            m.content = renumber(&m.content, "image", &images);
            m.content = renumber(&m.content, "speech", &speech);
            m
        })
        .collect();
    Some(Shortened {
        conversation: Conversation {
            messages,
            images: images
                .iter()
                .map(|&i| conversation.images[i].clone())
                .collect(),
            speech: speech
                .iter()
                .map(|&i| conversation.speech[i].clone())
                .collect(),
        },
        images,
        speech,
        dropped: gone.len(),
    })
}

/// Indices of `kind` placeholders in `text`, in order.
fn placeholders(text: &str, kind: &str) -> Vec<usize> {
    let tag = format!("<{kind}_placeholder_");
    let mut out = vec![];
    let mut rest = text;
    while let Some(at) = rest.find(&tag) {
        rest = &rest[at + tag.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if rest[digits.len()..].starts_with('>') {
            if let Ok(n) = digits.parse() {
                out.push(n);
            }
        }
    }
    out
}

/// The media of `kind` that stay: all but those named only by the dropped messages.
fn survivors(kind: &str, n: usize, gone: &[&str], kept: &[&str]) -> Vec<usize> {
    let named = |texts: &[&str]| -> Vec<usize> {
        texts.iter().flat_map(|t| placeholders(t, kind)).collect()
    };
    let (gone, kept) = (named(gone), named(kept));
    (0..n)
        .filter(|i| !gone.contains(i) || kept.contains(i))
        .collect()
}

/// `text` with each `kind` placeholder renumbered to its index in `order`.
fn renumber(text: &str, kind: &str, order: &[usize]) -> String {
    let tag = format!("<{kind}_placeholder_");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&tag) {
        out.push_str(&rest[..at + tag.len()]);
        rest = &rest[at + tag.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let new = digits
            .parse::<usize>()
            .ok()
            .filter(|_| rest[digits.len()..].starts_with('>'))
            .and_then(|old| order.iter().position(|&o| o == old));
        match new {
            Some(n) => out.push_str(&n.to_string()),
            None => out.push_str(&digits),
        }
        rest = &rest[digits.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::text::Message;
    use std::path::PathBuf;

    fn conv(msgs: &[(Role, &str)], images: usize, speech: usize) -> Conversation {
        Conversation {
            messages: msgs.iter().map(|(r, c)| Message::new(*r, *c)).collect(),
            images: (0..images)
                .map(|i| PathBuf::from(format!("i{i}")))
                .collect(),
            speech: (0..speech)
                .map(|i| PathBuf::from(format!("s{i}")))
                .collect(),
        }
    }

    #[test]
    fn the_oldest_turn_goes_with_its_media_and_the_rest_is_renumbered() {
        let c = conv(
            &[
                (Role::System, "be brief"),
                (
                    Role::User,
                    "what is <image_placeholder_0><image_placeholder_1>?",
                ),
                (Role::Assistant, "a cat <image>…</image>"),
                (
                    Role::User,
                    "and <image_placeholder_2>, <speech_placeholder_0>",
                ),
                (Role::Assistant, "a dog"),
                (
                    Role::User,
                    "again <image_placeholder_1><image_placeholder_3>",
                ),
            ],
            4,
            1,
        );
        let s = drop_oldest_turn(&c).unwrap();
        assert_eq!(s.dropped, 2);
        // Image 1 is named again later: it stays.
        assert_eq!(s.images, vec![1, 2, 3]);
        assert_eq!(s.speech, vec![0]);
        let texts: Vec<_> = s
            .conversation
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(
            texts,
            [
                "be brief",
                "and <image_placeholder_1>, <speech_placeholder_0>",
                "a dog",
                "again <image_placeholder_0><image_placeholder_2>"
            ]
        );
        assert_eq!(
            s.conversation.images,
            vec![
                PathBuf::from("i1"),
                PathBuf::from("i2"),
                PathBuf::from("i3")
            ]
        );
        let s = drop_oldest_turn(&s.conversation).unwrap();
        assert_eq!(s.conversation.messages.len(), 2);
        assert_eq!(s.images, vec![0, 2]);
        assert_eq!(s.speech, Vec::<usize>::new());
        assert_eq!(
            s.conversation.messages[1].content,
            "again <image_placeholder_0><image_placeholder_1>"
        );
        // Only the last question is left: nothing more to drop.
        assert!(drop_oldest_turn(&s.conversation).is_none());
    }

    #[test]
    fn text_that_only_looks_like_a_placeholder_is_kept() {
        assert_eq!(
            renumber("<image_placeholder_x> <image_placeholder_7", "image", &[7]),
            "<image_placeholder_x> <image_placeholder_7"
        );
        assert_eq!(placeholders("<image_placeholder_12>", "image"), vec![12]);
    }
}
