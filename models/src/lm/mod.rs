//! The MIO language model: Llama architecture (Yi-6B sizes for MIO-7B) on candle.
