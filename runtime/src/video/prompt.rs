//! Where a video's frames go in the user's message.

use super::keyframes::VIDEO_PROMPT;

/// `<image_placeholder_N>` for N in `first..first + n`, back to back.
pub fn frame_run(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("<image_placeholder_{i}>"))
        .collect()
}

/// Puts each video's frames into `text` as runs of `<image_placeholder_N>` (numbers from
/// `first_image` on, video after video, no separator between frames, as the reference writes
/// them). `<video_placeholder_V>` in the text marks where video V goes; a video the text does
/// not place goes after it on a new line (the reference's "question\n<frames>" wording), or
/// after "Please describe the following video: " when the text is empty.
pub fn place_video_frames(text: &str, first_image: usize, frame_counts: &[usize]) -> String {
    let mut out = text.to_string();
    let mut next = first_image;
    for (v, &n) in frame_counts.iter().enumerate() {
        let run = frame_run(next, n);
        next += n;
        let tag = format!("<video_placeholder_{v}>");
        if out.contains(&tag) {
            out = out.replace(&tag, &run);
        } else if out.trim().is_empty() {
            out = format!("{VIDEO_PROMPT}{run}");
        } else {
            out = format!("{out}\n{run}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::place_video_frames;

    #[test]
    fn frames_follow_the_question_or_replace_the_tag() {
        assert_eq!(
            place_video_frames("What is she doing?", 1, &[2]),
            "What is she doing?\n<image_placeholder_1><image_placeholder_2>"
        );
        assert_eq!(
            place_video_frames("<video_placeholder_0>\nIs this dog happy?", 0, &[2]),
            "<image_placeholder_0><image_placeholder_1>\nIs this dog happy?"
        );
        assert_eq!(
            place_video_frames("", 0, &[1]),
            "Please describe the following video: <image_placeholder_0>"
        );
    }
}
