"""Imports every domain's ORM models so ``Base.metadata`` knows all tables, and connects
the domains where a lower one must reach a higher one.

Every entry point imports this module (the CLI, the app factory, Alembic's env.py).
A flush sorts tables by their foreign keys, so a process that imported only some
models fails on the first write that crosses domains (``app_user.employee_id`` ->
``employee``: a fresh install's ``create-user``).
"""

from app.auth import models as auth_models
from app.auth import service as auth_service
from app.cycles import models as cycles_models
from app.db import Base
from app.mail import models as mail_models
from app.matrix import models as matrix_models
from app.matrix import service as matrix_service
from app.org import models as org_models
from app.org import service as org_service
from app.ratings import models as ratings_models
from app.reports import models as reports_models
from app.reports import personal_models as reports_personal_models
from app.scim import models as scim_models

metadata = Base.metadata

# What a lower domain needs from a higher one is handed in here, once for every process,
# instead of the lower one naming the higher one's tables.
auth_service.use_employee_directory(org_service.EMPLOYEE_DIRECTORY)
org_service.on_employees_leaving(matrix_service.drop_links_of_leavers)

__all__ = [
    "auth_models",
    "cycles_models",
    "mail_models",
    "matrix_models",
    "metadata",
    "org_models",
    "ratings_models",
    "reports_models",
    "reports_personal_models",
    "scim_models",
]
