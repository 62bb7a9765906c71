package dogbreed.torchserve;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.pytorch.serve.servingsdk.Context;
import org.pytorch.serve.servingsdk.ModelServerEndpoint;
import org.pytorch.serve.servingsdk.Worker;
import org.pytorch.serve.servingsdk.annotations.Endpoint;
import org.pytorch.serve.servingsdk.annotations.helpers.EndpointTypes;
import org.pytorch.serve.servingsdk.http.Request;
import org.pytorch.serve.servingsdk.http.Response;

/**
 * SageMaker's health check on TorchServe: 503 until a worker has loaded the model, 200 after.
 *
 * <p>TorchServe's own /ping is 200 as soon as its frontend is up, while the workers still load (requests
 * then queue). A worker counts as loaded once dogbreed's model_fn has returned, and model_fn returns only
 * after the model has answered a warm-up prediction, as dogbreed.serve's /ping does. The inference
 * server asks plugins before its built-in routes, so this endpoint replaces /ping; TorchServe loads it
 * from plugins_path (ts.properties beside this file) with java.util.ServiceLoader. Rebuild the jar with
 * `python -m launch.replay.stacks.ping_plugin` after editing.
 */
@Endpoint(
        urlPattern = "ping",
        endpointType = EndpointTypes.INFERENCE,
        description = "503 until a worker has loaded the model (dogbreed)")
public final class Ping extends ModelServerEndpoint {
    private static final byte[] HEALTHY = "{\"status\": \"ok\"}".getBytes(StandardCharsets.UTF_8);
    private static final byte[] LOADING =
            "{\"error\": \"model is loading\"}".getBytes(StandardCharsets.UTF_8);

    @Override
    public void doGet(Request request, Response response, Context context) throws IOException {
        boolean loaded =
                context.getModels().values().stream()
                        .flatMap(model -> model.getModelWorkers().stream())
                        .anyMatch(Worker::isRunning);
        response.setContentType("application/json");
        if (loaded) {
            response.setStatus(200);
            response.getOutputStream().write(HEALTHY);
        } else {
            response.setStatus(503, "Service Unavailable");
            response.getOutputStream().write(LOADING);
        }
    }
}
