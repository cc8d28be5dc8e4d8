from django.urls import path

from console.conversations import api, views

app_name = "conversations"

urlpatterns = [
    path("chat/", views.chat, name="chat"),
    path("chat/ask/", views.ask, name="ask"),
    path("chat/clear/", views.clear, name="clear"),
    path("chat/answers/<int:pk>/vote/", views.vote, name="vote"),
    path("v1/chat/completions", api.chat_completions, name="chat-completions"),
    path("v1/models", api.models, name="models"),
]
