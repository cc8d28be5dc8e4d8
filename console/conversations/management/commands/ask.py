"""python manage.py ask "QUESTION" [--mode prompt|rag|adapter|both] [--channel ID] [--json]"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from console.conversations import answering


class Command(BaseCommand):
    help = "Ask the bot a question, as a channel would, and print the answer with its sources."

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument(
            "--mode", choices=answering.MODES, help="Default: the channel's mode or ANSWER_MODE."
        )
        parser.add_argument(
            "--channel", default="", help="Answer as in this channel, e.g. slack:C0123 or C0123."
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, question: str, mode: str | None, channel: str, **options: Any) -> None:
        platform, _, channel_id = channel.rpartition(":")
        try:
            answer = answering.answer(question, platform=platform or "cli", channel=channel_id, mode=mode)
        except (answering.ChannelDisabled, ValueError) as err:
            raise CommandError(str(err)) from err
        if options["json"]:
            payload = {
                "answer": answer.text,
                "sources": [
                    {
                        "document": s["document"],
                        "source": s["source"],
                        "score": s["score"],
                        "cited": s["cited"],
                    }
                    for s in answer.sources
                ],
                "mode": answer.mode,
                "adapter": answer.adapter.name if answer.adapter else None,
                "covered": answer.covered,
                "timings": answer.timings,
                "tokens": {"prompt": answer.prompt_tokens, "completion": answer.completion_tokens},
                "answer_id": answer.pk,
            }
            self.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2))
            return
        self.stdout.write(answer.text)
        if answer.sources:
            self.stdout.write("")
            self.stdout.write("Sources:")
            for source in answer.sources:
                self.stdout.write(f"  [{source['number']}] {source['document']} — {source['source']}")
        adapter = answer.adapter.name if answer.adapter else "none"
        self.stdout.write(
            self.style.MIGRATE_LABEL(
                f"\nmode {answer.mode}, adapter {adapter}, {answer.timings['total']:.0f} ms"
            )
        )
