//! The native Gemini provider (work in progress).
