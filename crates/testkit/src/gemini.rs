//! A fake Gemini API upstream on loopback (work in progress).
