"""``syncguide app``: the web app (Gradio) over the library's pipelines; :mod:`.service` holds its engine."""
