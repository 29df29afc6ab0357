/** A static export: `sensorpipe api` serves dashboard/out at `/`; no Node.js at run time. */
const nextConfig = {
  output: "export",
  reactStrictMode: true,
  images: { unoptimized: true },
  typescript: { ignoreBuildErrors: false },
};

export default nextConfig;
