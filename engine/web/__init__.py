"""The web application for practitioners, data managers and admins (`contactpoint serve`; see
docs/web.md). It sits on top of the engine and governance: every page's work is a governance act,
and nothing in the engine core imports this package."""
