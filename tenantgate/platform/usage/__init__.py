"""The usage surface: OpenAI's Usage and Costs API under /v1/organization, billing exports under /admin/usage."""
