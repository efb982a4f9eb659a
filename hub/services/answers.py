"""A researcher's own DP answers, as stored by :mod:`hub.services.queries`: history and one answer.

Reading an answer charges nothing: it holds released (noisy) values only, given to this
researcher already. Another researcher's answer is not found, as a missing one is.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actors import Actor, acting_principal
from hub.domain_errors import NotFound
from hub.models import QueryAnswer
from hub.services.queries import SCOPE


def list_answers(session: Session, actor: Actor, *, limit: int = 100) -> Sequence[QueryAnswer]:
    """Return the acting researcher's answers, newest first.

    :param actor: a researcher acting under ``queries:run``
    :param limit: at most this many
    """
    principal = acting_principal(actor, SCOPE)
    return session.scalars(
        select(QueryAnswer)
        .where(QueryAnswer.principal_id == principal.id)
        .order_by(QueryAnswer.created_at.desc(), QueryAnswer.id)
        .limit(limit)
    ).all()


def get_answer(session: Session, actor: Actor, answer_id: str) -> QueryAnswer:
    """Return one of the acting researcher's answers.

    :raises hub.domain_errors.NotFound: for another researcher's answer or a missing one.
    """
    principal = acting_principal(actor, SCOPE)
    row = session.get(QueryAnswer, answer_id)
    if row is None or row.principal_id != principal.id:
        raise NotFound(f"no answer {answer_id} among your answers")
    return row
